/*
 * The cluster settings of the C face: iobus_config_set_redis checks its
 * arguments, and a server whose Redis cannot be reached fails to start with
 * a clear error (and can be freed). The cluster itself, with a real Redis,
 * is exercised by tests/redis_cluster.rs (make test-redis).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* A loopback port nothing listens on (bound, then released). */
static unsigned short unused_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    unsigned short port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    close(fd);
    return port;
}

static void test_redis_settings(void) {
    SECTION("cluster: iobus_config_set_redis checks its arguments");
    iobus_config *cfg = iobus_config_new();
    CHECK(cfg != NULL);
    CHECK_ST(iobus_config_set_redis(NULL, "redis://127.0.0.1:6379", NULL, IOBUS_REDIS_PUBSUB, 0),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_redis(cfg, NULL, NULL, IOBUS_REDIS_PUBSUB, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_redis(cfg, "http://127.0.0.1:6379", NULL, IOBUS_REDIS_PUBSUB, 0),
             IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "redis://");
    CHECK_ST(iobus_config_set_redis(cfg, "redis://127.0.0.1:6379", "", IOBUS_REDIS_PUBSUB, 0),
             IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_redis(cfg, "redis://\xff", NULL, IOBUS_REDIS_PUBSUB, 0), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_config_set_redis(cfg, "redis://127.0.0.1:6379", "app", IOBUS_REDIS_PUBSUB_OWN_RESPONSE_CHANNEL,
                                    2000));
    iobus_config_free(cfg);
}

static void test_redis_down_at_start(void) {
    SECTION("cluster: Redis unreachable makes start fail, clearly");
    unsigned short port = unused_port();
    CHECK(port != 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u", (unsigned)port);
    iobus_config *cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_redis(cfg, url, NULL, IOBUS_REDIS_PUBSUB, 0));
    iobus_server *server = NULL;
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);
    CHECK_ST(iobus_server_start(server, "127.0.0.1", 0), IOBUS_ERR_IO);
    CHECK_HAS(iobus_last_error(), "Redis");
    uint16_t bound = 7;
    CHECK_ST(iobus_server_port(server, &bound), IOBUS_ERR_NOT_RUNNING);
    CHECK(bound == 7);
    iobus_server_free(server);
}

int main(void) {
    h_init(60);
    test_redis_settings();
    test_redis_down_at_start();
    return h_finish("test_cluster");
}
