/*
 * The C API without clients: version and errors, every configuration
 * setter (and its effect on the wire, through raw HTTP), the server
 * lifecycle (start, port, stop, restart, free), and bad input — NULL for
 * every pointer argument, invalid UTF-8, invalid and non-array JSON,
 * reserved events, placeholder mismatches, unknown socket ids, calls on a
 * stopped server — each with its documented status and no crash.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "iobus.h"

#define BAD_UTF8 "\xff\xfe\x80"
#define SOME_SID "AAAAAAAAAAAAAAAAAAAA"

/* ---- version, status names, last error -------------------------------------------- */

static void *fail_on_other_thread(void *arg) {
    (void)arg;
    CHECK_ST(iobus_config_set_path(NULL, "/x"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "config");
    return NULL;
}

static void test_version_and_errors(void) {
    SECTION("version, status names, last error");
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", IOBUS_VERSION_MAJOR, IOBUS_VERSION_MINOR, IOBUS_VERSION_PATCH);
    CHECK_STR(iobus_version(), want);

    CHECK_STR(iobus_last_error(), "");
    CHECK_STR(iobus_status_str(IOBUS_OK), "ok");
    CHECK_STR(iobus_status_str(IOBUS_ERR_NULL_ARGUMENT), "null argument");
    CHECK_STR(iobus_status_str(IOBUS_ERR_UNKNOWN_SOCKET), "unknown socket");
    CHECK_STR(iobus_status_str(99), "unknown status");
    CHECK_STR(iobus_status_str(-1), "unknown status");
    for (int a = IOBUS_OK; a <= IOBUS_ERR_PANIC; a++) {
        CHECK(strlen(iobus_status_str(a)) > 0);
        CHECK(strcmp(iobus_status_str(a), "unknown status") != 0);
        for (int b = a + 1; b <= IOBUS_ERR_PANIC; b++) CHECK(strcmp(iobus_status_str(a), iobus_status_str(b)) != 0);
    }

    /* The message belongs to the failing thread. */
    CHECK_ST(iobus_server_new(NULL, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "server_out");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fail_on_other_thread, NULL) == 0);
    pthread_join(t, NULL);
    CHECK_HAS(iobus_last_error(), "server_out");

    iobus_string_free(NULL);
}

/* ---- configuration ---------------------------------------------------------------- */

static void test_config_setters(void) {
    SECTION("config setters");
    iobus_config *cfg = iobus_config_new();
    CHECK(cfg != NULL);

    CHECK_OK(iobus_config_set_path(cfg, "/custom"));
    CHECK_OK(iobus_config_set_path(cfg, "/custom/"));
    CHECK_ST(iobus_config_set_path(cfg, "custom"), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_path(cfg, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "path");
    CHECK_ST(iobus_config_set_path(cfg, "/" BAD_UTF8), IOBUS_ERR_INVALID_UTF8);

    CHECK_OK(iobus_config_set_ping_interval(cfg, 300));
    CHECK_ST(iobus_config_set_ping_interval(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_ping_timeout(cfg, 200));
    CHECK_ST(iobus_config_set_ping_timeout(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_max_payload(cfg, 12345));
    CHECK_ST(iobus_config_set_max_payload(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_upgrade_timeout(cfg, 5000));
    CHECK_ST(iobus_config_set_upgrade_timeout(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_connect_timeout(cfg, 1000));
    CHECK_ST(iobus_config_set_connect_timeout(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_transports(cfg, true, true));
    CHECK_OK(iobus_config_set_transports(cfg, false, true));
    CHECK_OK(iobus_config_set_transports(cfg, true, false));
    CHECK_ST(iobus_config_set_transports(cfg, false, false), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_allow_upgrades(cfg, false));
    CHECK_OK(iobus_config_set_allow_upgrades(cfg, true));

    /* CORS options need an origin first. */
    CHECK_ST(iobus_config_set_cors_credentials(cfg, true), IOBUS_ERR_WRONG_STATE);
    CHECK_ST(iobus_config_set_cors_max_age(cfg, 600), IOBUS_ERR_WRONG_STATE);
    CHECK_ST(iobus_config_add_cors_origin(cfg, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_add_cors_origin(cfg, BAD_UTF8), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_config_add_cors_origin(cfg, "https://example.com"));
    CHECK_OK(iobus_config_add_cors_origin(cfg, "https://other.example"));
    CHECK_OK(iobus_config_set_cors_credentials(cfg, true));
    CHECK_OK(iobus_config_set_cors_max_age(cfg, 600));

    CHECK_OK(iobus_config_set_max_attachments(cfg, 0));
    CHECK_OK(iobus_config_set_max_attachments(cfg, 4));
    CHECK_OK(iobus_config_set_max_attachments(cfg, 1000));
    /* Absurd values are refused with a message saying what is allowed. */
    CHECK_ST(iobus_config_set_max_attachments(cfg, 1001), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(iobus_last_error(), "max attachments") != NULL);
    CHECK_ST(iobus_config_set_max_attachments(cfg, SIZE_MAX), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_max_buffered(cfg, 1 << 20));
    CHECK_ST(iobus_config_set_max_buffered(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_max_buffered(cfg, SIZE_MAX), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(iobus_last_error(), "max buffered") != NULL);
    CHECK_ST(iobus_config_set_max_payload(cfg, SIZE_MAX), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_ping_interval(cfg, UINT64_MAX), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_ping_timeout(cfg, 86400001), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_ping_timeout(cfg, 86400000));
    CHECK_OK(iobus_config_set_http_header_timeout(cfg, 2000));
    CHECK_ST(iobus_config_set_http_header_timeout(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(iobus_last_error(), "header timeout") != NULL);
    CHECK_ST(iobus_config_set_http_header_timeout(cfg, UINT64_MAX), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_http_keep_alive_timeout(cfg, 2000));
    CHECK_ST(iobus_config_set_http_keep_alive_timeout(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_write_timeout(cfg, 2000));
    CHECK_ST(iobus_config_set_write_timeout(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_max_header_bytes(cfg, 8192));
    CHECK_ST(iobus_config_set_max_header_bytes(cfg, 100), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_max_header_bytes(cfg, SIZE_MAX), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_max_connections(cfg, 1000));
    CHECK_OK(iobus_config_set_max_connections(cfg, 0));
    CHECK_OK(iobus_config_set_worker_threads(cfg, 1));
    CHECK_ST(iobus_config_set_worker_threads(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_worker_threads(cfg, 100000), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_batch_scheduling(cfg, false));
    CHECK_OK(iobus_config_set_batch_scheduling(cfg, true));
    CHECK_OK(iobus_config_set_serve_client(cfg, false));
    CHECK_OK(iobus_config_set_serve_client(cfg, true));
    CHECK_ST(iobus_config_set_client_dir(cfg, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_client_dir(cfg, BAD_UTF8), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_config_set_client_dir(cfg, "/nonexistent"));
    CHECK_OK(iobus_config_set_static_dir(cfg, "/tmp"));
    CHECK_OK(iobus_config_set_static_dir(cfg, NULL));
    CHECK_ST(iobus_config_set_static_dir(cfg, BAD_UTF8), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_config_set_dispatch(cfg, IOBUS_DISPATCH_POLL));
    CHECK_OK(iobus_config_set_dispatch(cfg, IOBUS_DISPATCH_THREAD));
    CHECK_ST(iobus_config_set_dispatch(cfg, 2), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_dispatch(cfg, -1), IOBUS_ERR_INVALID_ARGUMENT);
    iobus_config_free(cfg);

    /* A NULL config, for every setter. */
    CHECK_ST(iobus_config_set_path(NULL, "/x"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_ping_interval(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_ping_timeout(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_max_payload(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_upgrade_timeout(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_connect_timeout(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_transports(NULL, true, true), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_allow_upgrades(NULL, true), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_add_cors_origin(NULL, "*"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_cors_credentials(NULL, true), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_cors_max_age(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_max_attachments(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_max_buffered(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_http_header_timeout(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_http_keep_alive_timeout(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_write_timeout(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_max_header_bytes(NULL, 8192), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_max_connections(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_worker_threads(NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_batch_scheduling(NULL, true), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_serve_client(NULL, true), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_client_dir(NULL, "/x"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_static_dir(NULL, "/x"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_dispatch(NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    iobus_config_free(NULL);
}

/* ---- what the settings do on the wire ---------------------------------------------- */

static const char *header_value(const char *response, const char *name, char *out, size_t size) {
    /* Case-insensitive search for "\r\n<name>:" in the head. */
    size_t n = strlen(name);
    for (const char *p = response; *p; p++) {
        if (p[0] == '\r' && p[1] == '\n') {
            if (p[2] == '\r') break;
            const char *h = p + 2;
            size_t i = 0;
            while (i < n && h[i] && ((h[i] | 0x20) == (name[i] | 0x20))) i++;
            if (i == n && h[n] == ':') {
                const char *v = h + n + 1;
                while (*v == ' ') v++;
                size_t len = strcspn(v, "\r");
                if (len >= size) len = size - 1;
                memcpy(out, v, len);
                out[len] = '\0';
                return out;
            }
        }
    }
    return NULL;
}

static void test_config_effects(const char *static_dir) {
    SECTION("config effects on the wire");
    const char *client_dir = getenv("IOBUS_TEST_CLIENT_DIR");
    iobus_config *cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_path(cfg, "/custom"));
    CHECK_OK(iobus_config_set_ping_interval(cfg, 300));
    CHECK_OK(iobus_config_set_ping_timeout(cfg, 200));
    CHECK_OK(iobus_config_set_max_payload(cfg, 12345));
    CHECK_OK(iobus_config_set_connect_timeout(cfg, 300));
    CHECK_OK(iobus_config_set_upgrade_timeout(cfg, 1000));
    CHECK_OK(iobus_config_add_cors_origin(cfg, "https://example.com"));
    CHECK_OK(iobus_config_set_cors_credentials(cfg, true));
    CHECK_OK(iobus_config_set_cors_max_age(cfg, 600));
    CHECK_OK(iobus_config_set_worker_threads(cfg, 1));
    CHECK_OK(iobus_config_set_max_buffered(cfg, 1 << 20));
    CHECK_OK(iobus_config_set_max_attachments(cfg, 2));
    CHECK_OK(iobus_config_set_static_dir(cfg, static_dir));
    if (client_dir) CHECK_OK(iobus_config_set_client_dir(cfg, client_dir));
    iobus_server *server = NULL;
    CHECK_OK(iobus_server_new(cfg, &server));
    /* The server copied the settings. */
    iobus_config_free(cfg);
    CHECK_OK(iobus_server_start(server, "127.0.0.1", 0));
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(server, &port));
    CHECK(port != 0);

    char *res = h_http_get(port, "/custom/?EIO=4&transport=polling", "Origin: https://example.com\r\n");
    char value[256];
    CHECK(res != NULL);
    if (res) {
        CHECK_HAS(res, "HTTP/1.1 200");
        CHECK_HAS(res, "0{\"sid\":\"");
        CHECK_HAS(res, "\"upgrades\":[\"websocket\"]");
        CHECK_HAS(res, "\"pingInterval\":300");
        CHECK_HAS(res, "\"pingTimeout\":200");
        CHECK_HAS(res, "\"maxPayload\":12345");
        CHECK_STR(header_value(res, "access-control-allow-origin", value, sizeof value), "https://example.com");
        CHECK_STR(header_value(res, "access-control-allow-credentials", value, sizeof value), "true");
        /* No namespace joined within connectTimeout: the session is closed. */
        char sid[32];
        CHECK(h_json_field(res, "sid", sid, sizeof sid));
        h_sleep_ms(T(900));
        char path[128];
        snprintf(path, sizeof path, "/custom/?EIO=4&transport=polling&sid=%s", sid);
        char *again = h_http_get(port, path, NULL);
        CHECK(again && (strstr(again, "HTTP/1.1 400") || strstr(again, "\r\n\r\n1")));
        free(again);
    }
    free(res);

    /* An origin that is not allowed gets no CORS headers. */
    res = h_http_get(port, "/custom/?EIO=4&transport=polling", "Origin: https://evil.example\r\n");
    CHECK(res && header_value(res, "access-control-allow-origin", value, sizeof value) == NULL);
    free(res);

    /* Preflight. */
    char req[512];
    snprintf(req, sizeof req,
             "OPTIONS /custom/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://example.com\r\n"
             "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n");
    res = h_http(port, req);
    CHECK(res != NULL);
    if (res) {
        CHECK_HAS(res, "HTTP/1.1 204");
        CHECK_STR(header_value(res, "access-control-max-age", value, sizeof value), "600");
    }
    free(res);

    /* The default path is not served any more. */
    res = h_http_get(port, "/socket.io/?EIO=4&transport=polling", NULL);
    CHECK(res && strstr(res, "0{\"sid\"") == NULL);
    free(res);

    /* The client bundle under the path, and the static directory. */
    if (client_dir) {
        res = h_http_get(port, "/custom/socket.io.js", NULL);
        CHECK(res && strstr(res, "HTTP/1.1 200"));
        CHECK(res && header_value(res, "content-type", value, sizeof value) && strstr(value, "javascript"));
        free(res);
    }
    res = h_http_get(port, "/hello.txt", NULL);
    CHECK(res && strstr(res, "HTTP/1.1 200"));
    CHECK(res && strstr(res, "hello from the static dir"));
    free(res);
    iobus_server_free(server);

    /* Polling only, no upgrades, no client bundle. */
    cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_transports(cfg, true, false));
    CHECK_OK(iobus_config_set_serve_client(cfg, false));
    server = NULL;
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);
    CHECK_OK(iobus_server_start(server, NULL, 0));
    CHECK_OK(iobus_server_port(server, &port));
    res = h_http_get(port, "/socket.io/?EIO=4&transport=polling", NULL);
    CHECK(res && strstr(res, "\"upgrades\":[]"));
    CHECK(res && header_value(res, "access-control-allow-origin", value, sizeof value) == NULL);
    free(res);
    res = h_http_get(port, "/socket.io/?EIO=4&transport=websocket", NULL);
    CHECK(res && strstr(res, "HTTP/1.1 400"));
    free(res);
    res = h_http_get(port, "/socket.io/socket.io.js", NULL);
    CHECK(res && strstr(res, "HTTP/1.1 200") == NULL);
    free(res);
    iobus_server_free(server);

    /* Both transports, upgrades refused. */
    cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_allow_upgrades(cfg, false));
    server = NULL;
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);
    CHECK_OK(iobus_server_start(server, NULL, 0));
    CHECK_OK(iobus_server_port(server, &port));
    res = h_http_get(port, "/socket.io/?EIO=4&transport=polling", NULL);
    CHECK(res && strstr(res, "\"upgrades\":[]"));
    free(res);
    iobus_server_free(server);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static void test_lifecycle(void) {
    SECTION("lifecycle: start, port, stop, restart, free");
    iobus_server *server = (iobus_server *)0x1;
    CHECK_ST(iobus_server_new(NULL, NULL), IOBUS_ERR_NULL_ARGUMENT);
    server = NULL;
    CHECK_OK(iobus_server_new(NULL, &server));
    CHECK(server != NULL);

    uint16_t port = 4242;
    CHECK_ST(iobus_server_port(server, &port), IOBUS_ERR_NOT_RUNNING);
    CHECK(port == 4242); /* out-parameters are written only on success */
    CHECK_OK(iobus_server_stop(server)); /* stopping a server that never ran */

    CHECK_ST(iobus_server_start(server, BAD_UTF8, 0), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_server_start(server, "no such host.invalid", 0), IOBUS_ERR_IO);
    CHECK_OK(iobus_server_start(server, NULL, 0));
    CHECK_OK(iobus_server_port(server, &port));
    CHECK(port != 0 && port != 4242);
    CHECK_ST(iobus_server_start(server, NULL, 0), IOBUS_ERR_ALREADY_RUNNING);
    CHECK(strlen(iobus_last_error()) > 0);

    /* Another server cannot take the same port. */
    iobus_server *other = NULL;
    CHECK_OK(iobus_server_new(NULL, &other));
    CHECK_ST(iobus_server_start(other, "127.0.0.1", port), IOBUS_ERR_IO);
    CHECK_HAS(iobus_last_error(), "cannot listen");
    uint16_t other_port = 7;
    CHECK_ST(iobus_server_port(other, &other_port), IOBUS_ERR_NOT_RUNNING);
    CHECK(other_port == 7);

    char *res = h_http_get(port, "/socket.io/?EIO=4&transport=polling", NULL);
    CHECK(res && strstr(res, "0{\"sid\""));
    free(res);

    CHECK_OK(iobus_server_stop(server));
    CHECK_OK(iobus_server_stop(server)); /* twice: nothing happens */
    CHECK_ST(iobus_server_port(server, &port), IOBUS_ERR_NOT_RUNNING);
    res = h_http_get(port, "/socket.io/?EIO=4&transport=polling", NULL);
    CHECK(res == NULL || strstr(res, "0{\"sid\"") == NULL);
    free(res);

    /* The port is free again, and the stopped server starts again on it. */
    CHECK_OK(iobus_server_start(other, "127.0.0.1", port));
    CHECK_OK(iobus_server_stop(other));
    CHECK_OK(iobus_server_start(server, "127.0.0.1", port));
    uint16_t again = 0;
    CHECK_OK(iobus_server_port(server, &again));
    CHECK(again == port);
    res = h_http_get(port, "/socket.io/?EIO=4&transport=polling", NULL);
    CHECK(res && strstr(res, "0{\"sid\""));
    free(res);
    /* Many restarts in a row. */
    for (int i = 0; i < 5; i++) {
        CHECK_OK(iobus_server_stop(server));
        CHECK_OK(iobus_server_start(server, "127.0.0.1", 0));
    }
    iobus_server_free(server); /* frees a running server */
    iobus_server_free(other);  /* and a stopped one */
    iobus_server_free(NULL);

    /* A server that never started. */
    server = NULL;
    CHECK_OK(iobus_server_new(NULL, &server));
    iobus_server_free(server);

    /* A server in poll mode that never polled. */
    iobus_config *cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_dispatch(cfg, IOBUS_DISPATCH_POLL));
    server = NULL;
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);
    CHECK(iobus_server_poll_fd(server) >= 0);
    size_t n = 99;
    CHECK_OK(iobus_server_poll(server, 10, &n));
    CHECK(n == 0);
    CHECK_OK(iobus_server_poll(server, 0, NULL));
    CHECK_OK(iobus_server_start(server, NULL, 0));
    iobus_server_free(server);
}

/* ---- bad input ------------------------------------------------------------------------ */

static void noop_connect(void *ud, iobus_connect *req) {
    (void)ud;
    iobus_connect_accept(req);
}
static void noop_event(void *ud, const iobus_event *ev) {
    (void)ud;
    (void)ev;
}
static void noop_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    (void)ud;
    (void)nsp;
    (void)sid;
    (void)reason;
    (void)rooms;
}
static void noop_ack(void *ud, iobus_ack_status st, const iobus_event *reply) {
    (void)ud;
    (void)st;
    (void)reply;
    CHECK(0 && "an ack completion ran for an emit that failed");
}
static void noop_json(void *ud, const char *json, size_t len) {
    (void)ud;
    (void)json;
    (void)len;
    CHECK(0 && "a query's completion ran for a call that failed");
}

/* Every socket-, selection- and namespace-level call, on a server that is
 * not running. */
static void check_not_running(iobus_server *s) {
    char *out = (char *)"sentinel";
    const char *rooms[] = {"r"};
    iobus_selection in_r = {0};
    in_r.rooms = rooms;
    in_r.room_count = 1;
    CHECK_ST(iobus_socket_emit(s, SOME_SID, "e", "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_socket_emit_volatile(s, SOME_SID, "e", "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_socket_emit_with_ack(s, SOME_SID, "e", "[]", SIZE_MAX, NULL, 0, 100, noop_ack, NULL),
             IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_socket_join(s, SOME_SID, "r"), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_socket_leave(s, SOME_SID, "r"), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_socket_disconnect(s, SOME_SID, false), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_socket_rooms(s, SOME_SID, &out, NULL), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_socket_handshake(s, SOME_SID, &out, NULL), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_selection_emit(s, &in_r, "e", "[1]", SIZE_MAX, NULL, 0), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_selection_fetch_sockets(s, &in_r, noop_json, NULL), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_namespace_fetch_sockets(s, NULL, rooms, 1, &out, NULL), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_selection_join(s, &in_r, rooms, 1), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_selection_leave(s, &in_r, rooms, 1), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_selection_disconnect(s, &in_r, true), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_namespace_all_rooms(s, NULL, noop_json, NULL), IOBUS_ERR_NOT_RUNNING);
    CHECK_STR(out, "sentinel");
}

static void test_bad_input(void) {
    SECTION("bad input: NULL for every pointer argument");
    iobus_server *s = NULL;
    CHECK_OK(iobus_server_new(NULL, &s));
    char *out = (char *)"sentinel";
    size_t len = 77;
    const char *rooms[] = {"r"};
    const char *null_room[] = {NULL};
    const char *bad_room[] = {BAD_UTF8};
    iobus_buf buf = {(const uint8_t *)"ab", 2};
    iobus_buf null_data = {NULL, 3};

    /* Handlers. */
    CHECK_ST(iobus_server_add_namespace_pattern(NULL, "/x-*"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_add_namespace_pattern(s, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_add_namespace_pattern(s, BAD_UTF8), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_server_add_namespace_pattern(s, "x-*"), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_server_on_connect(NULL, NULL, noop_connect, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_on_connect(s, BAD_UTF8, noop_connect, NULL), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_server_on_connect(s, NULL, noop_connect, NULL));
    CHECK_OK(iobus_server_on_connect(s, NULL, NULL, NULL));
    CHECK_ST(iobus_server_on_event(NULL, NULL, "e", noop_event, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_on_event(s, NULL, NULL, noop_event, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_on_event(s, NULL, BAD_UTF8, noop_event, NULL), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_server_on_event(s, BAD_UTF8, "e", noop_event, NULL), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_server_on_event(s, "/", "e", noop_event, NULL));
    CHECK_OK(iobus_server_on_event(s, "/", "e", NULL, NULL));
    CHECK_ST(iobus_server_on_any(NULL, NULL, noop_event, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_on_any(s, BAD_UTF8, noop_event, NULL), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_server_on_any(s, NULL, noop_event, NULL));
    CHECK_OK(iobus_server_on_any(s, NULL, NULL, NULL));
    CHECK_ST(iobus_server_on_disconnect(NULL, NULL, noop_disconnect, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_on_disconnect(s, BAD_UTF8, noop_disconnect, NULL), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_server_on_disconnect(s, NULL, noop_disconnect, NULL));
    CHECK_OK(iobus_server_on_disconnect(s, NULL, NULL, NULL));

    /* Lifecycle and polling. */
    CHECK_ST(iobus_server_start(NULL, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    uint16_t port = 9;
    CHECK_ST(iobus_server_port(NULL, &port), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_stop(NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK(iobus_server_poll_fd(NULL) == -1);
    CHECK(iobus_server_poll_fd(s) == -1); /* thread mode */
    size_t processed = 5;
    CHECK_ST(iobus_server_poll(NULL, 1, &processed), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_poll(s, 1, &processed), IOBUS_ERR_WRONG_STATE);
    CHECK(processed == 5);
    uint8_t records[64];
    size_t count = 5;
    CHECK_ST(iobus_server_poll_records(s, records, sizeof records, &processed, &count), IOBUS_ERR_WRONG_STATE);
    CHECK(processed == 5 && count == 5);

    /* Not running yet: socket and namespace calls say so. */
    check_not_running(s);

    CHECK_OK(iobus_server_start(s, NULL, 0));
    CHECK_ST(iobus_server_port(s, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_OK(iobus_server_port(s, &port));

    /* Sockets: NULL server, NULL / invalid / unknown ids. */
    CHECK_ST(iobus_socket_emit(NULL, SOME_SID, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit(s, NULL, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "sid");
    CHECK_ST(iobus_socket_emit(s, BAD_UTF8, "e", NULL, 0, NULL, 0), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_socket_emit(s, SOME_SID, "e", NULL, 0, NULL, 0), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_HAS(iobus_last_error(), SOME_SID);
    CHECK_ST(iobus_socket_emit(s, "not a sid", "e", NULL, 0, NULL, 0), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_emit(s, "", "e", NULL, 0, NULL, 0), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_emit_volatile(NULL, SOME_SID, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit_volatile(s, NULL, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit_volatile(s, SOME_SID, "e", NULL, 0, NULL, 0), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_emit_with_ack(NULL, SOME_SID, "e", NULL, 0, NULL, 0, 100, noop_ack, NULL),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit_with_ack(s, SOME_SID, "e", NULL, 0, NULL, 0, 100, NULL, NULL),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit_with_ack(s, NULL, "e", NULL, 0, NULL, 0, 100, noop_ack, NULL),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit_with_ack(s, SOME_SID, "e", NULL, 0, NULL, 0, 100, noop_ack, NULL),
             IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_join(NULL, SOME_SID, "r"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_join(s, NULL, "r"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_join(s, SOME_SID, "r"), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_leave(NULL, SOME_SID, "r"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_leave(s, NULL, "r"), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_leave(s, SOME_SID, "r"), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_disconnect(NULL, SOME_SID, true), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_disconnect(s, NULL, true), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_disconnect(s, BAD_UTF8, true), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_socket_disconnect(s, SOME_SID, true), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_rooms(NULL, SOME_SID, &out, &len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_rooms(s, NULL, &out, &len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_rooms(s, SOME_SID, &out, &len), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_handshake(NULL, SOME_SID, &out, &len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_handshake(s, NULL, &out, &len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_handshake(s, SOME_SID, &out, &len), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_STR(out, "sentinel");
    CHECK(len == 77);

    SECTION("bad input: selection calls");
    /* The selection's own fields, NULL and invalid UTF-8 in each, are
     * tests/c/test_selection.c's; here: the arguments of emits, fetches,
     * joins, leaves and disconnects on a server without clients. */
    iobus_selection all = {0};
    iobus_selection sel = {0};
    sel.nsp = "/";
    sel.rooms = rooms;
    sel.room_count = 1;
    sel.except_rooms = rooms;
    sel.except_room_count = 1;
    const char *except_sid[] = {SOME_SID};
    sel.except_sids = except_sid;
    sel.except_sid_count = 1;
    sel.flags = IOBUS_SELECTION_VOLATILE;
    CHECK_OK(iobus_selection_emit(s, &all, "e", NULL, 0, NULL, 0));
    CHECK_OK(iobus_selection_emit(s, &sel, "e", "[1,{}]", SIZE_MAX, NULL, 0));
    CHECK_ST(iobus_selection_emit(s, &all, NULL, NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "event");
    iobus_selection odd = {0};
    odd.except_room_count = 2; /* except_rooms NULL */
    CHECK_ST(iobus_selection_emit(s, &odd, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    odd.except_rooms = null_room;
    odd.except_room_count = 1;
    CHECK_ST(iobus_selection_emit(s, &odd, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    /* Arguments: JSON that is invalid, not an array, not UTF-8, or cut short. */
    CHECK_ST(iobus_selection_emit(s, &all, "e", "{\"a\":1}", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_HAS(iobus_last_error(), "array");
    CHECK_ST(iobus_selection_emit(s, &all, "e", "42", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_selection_emit(s, &all, "e", "", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_selection_emit(s, &all, "e", "[1,2]", 3, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_OK(iobus_selection_emit(s, &all, "e", "[1]xxxx", 3, NULL, 0));
    CHECK_ST(iobus_selection_emit(s, &all, "e", NULL, 5, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    /* Reserved event names. */
    const char *reserved[] = {"connect", "connect_error", "disconnect", "disconnecting", "newListener",
                              "removeListener"};
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++) {
        CHECK_ST(iobus_selection_emit(s, &all, reserved[i], "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_RESERVED_EVENT);
    }
    /* Attachments and placeholders must match. */
    CHECK_ST(iobus_selection_emit(s, &all, "e", "[1]", SIZE_MAX, &buf, 1), IOBUS_ERR_INVALID_BINARY);
    /* Without attachments the JSON is plain data: a placeholder-shaped
     * object travels as is (as Socket.IO sends it in a plain EVENT). */
    CHECK_OK(iobus_selection_emit(s, &all, "e", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, NULL, 0));
    /* Two placeholders may not name the same attachment. */
    CHECK_ST(iobus_selection_emit(s, &all, "e", "[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0}]",
                                  SIZE_MAX, &buf, 1),
             IOBUS_ERR_INVALID_BINARY);
    CHECK_ST(iobus_selection_emit(s, &all, "e", "[{\"_placeholder\":true,\"num\":1}]", SIZE_MAX, &buf, 1),
             IOBUS_ERR_INVALID_BINARY);
    CHECK_OK(iobus_selection_emit(s, &all, "e", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, &buf, 1));
    CHECK_ST(iobus_selection_emit(s, &all, "e", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, &null_data, 1),
             IOBUS_ERR_NULL_ARGUMENT);

    CHECK_ST(iobus_selection_fetch_sockets(NULL, &all, noop_json, NULL), IOBUS_ERR_NULL_ARGUMENT);
    odd = all;
    odd.room_count = 1; /* rooms NULL */
    CHECK_ST(iobus_selection_fetch_sockets(s, &odd, noop_json, NULL), IOBUS_ERR_NULL_ARGUMENT);
    odd.rooms = null_room;
    CHECK_ST(iobus_selection_fetch_sockets(s, &odd, noop_json, NULL), IOBUS_ERR_NULL_ARGUMENT);
    odd = all;
    odd.nsp = BAD_UTF8;
    CHECK_ST(iobus_selection_fetch_sockets(s, &odd, noop_json, NULL), IOBUS_ERR_INVALID_UTF8);
    static h_answer nobody = {"nobody", 0, ""};
    CHECK_STR(FETCH_SOCKETS(s, &all, &nobody), "[]");
    static h_answer nobody_elsewhere = {"nobody elsewhere", 0, ""};
    odd = all;
    odd.nsp = "/nobody";
    odd.rooms = rooms;
    odd.room_count = 1;
    CHECK_STR(FETCH_SOCKETS(s, &odd, &nobody_elsewhere), "[]");

    /* This server's sockets, now (synchronous). */
    size_t ids_len = 0;
    CHECK_ST(iobus_namespace_fetch_sockets(NULL, NULL, NULL, 0, &out, &ids_len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_namespace_fetch_sockets(s, NULL, NULL, 0, NULL, &ids_len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_namespace_fetch_sockets(s, NULL, NULL, 1, &out, &ids_len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_namespace_fetch_sockets(s, NULL, null_room, 1, &out, &ids_len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_namespace_fetch_sockets(s, BAD_UTF8, NULL, 0, &out, &ids_len), IOBUS_ERR_INVALID_UTF8);
    CHECK_STR(out, "sentinel");
    char *ids = NULL;
    CHECK_OK(iobus_namespace_fetch_sockets(s, NULL, NULL, 0, &ids, &ids_len));
    CHECK_STR(ids, "[]");
    CHECK(ids_len == 2);
    iobus_string_free(ids);
    ids = NULL;
    CHECK_OK(iobus_namespace_fetch_sockets(s, "/nobody", rooms, 1, &ids, NULL));
    CHECK_STR(ids, "[]");
    iobus_string_free(ids);

    const char *bad_rooms[] = {"r", BAD_UTF8};
    CHECK_ST(iobus_selection_join(NULL, &all, rooms, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_join(s, &all, null_room, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_join(s, &all, bad_rooms, 2), IOBUS_ERR_INVALID_UTF8);
    odd = all;
    odd.rooms = null_room;
    odd.room_count = 1;
    CHECK_ST(iobus_selection_join(s, &odd, rooms, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_OK(iobus_selection_join(s, &sel, rooms, 1));
    CHECK_ST(iobus_selection_leave(NULL, &all, rooms, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_leave(s, &all, NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_leave(s, NULL, rooms, 1), IOBUS_ERR_NULL_ARGUMENT);
    odd.rooms = bad_room;
    CHECK_ST(iobus_selection_leave(s, &odd, rooms, 1), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_selection_leave(s, &all, rooms, 1));
    odd = all;
    odd.room_count = 3; /* rooms NULL */
    CHECK_ST(iobus_selection_disconnect(s, &odd, false), IOBUS_ERR_NULL_ARGUMENT);
    odd = all;
    odd.nsp = BAD_UTF8;
    CHECK_ST(iobus_selection_disconnect(s, &odd, false), IOBUS_ERR_INVALID_UTF8);
    CHECK_OK(iobus_selection_disconnect(s, &all, false));
    CHECK_ST(iobus_namespace_all_rooms(NULL, NULL, noop_json, NULL), IOBUS_ERR_NULL_ARGUMENT);
    static h_answer no_rooms = {"no rooms", 0, ""};
    CHECK_STR(ALL_ROOMS(s, "/", &no_rooms), "[]");
    CHECK(nobody.calls == 1 && nobody_elsewhere.calls == 1 && no_rooms.calls == 1);

    SECTION("bad input: event, ack and connect handles");
    size_t blen = 5;
    CHECK(iobus_event_namespace(NULL) == NULL);
    CHECK(iobus_event_socket_id(NULL) == NULL);
    CHECK(iobus_event_name(NULL) == NULL);
    CHECK(iobus_event_args(NULL, &blen) == NULL);
    CHECK(blen == 5);
    CHECK(iobus_event_binary_count(NULL) == 0);
    CHECK(iobus_event_binary(NULL, 0, &blen) == NULL);
    CHECK(blen == 5);
    CHECK(!iobus_event_wants_ack(NULL));
    CHECK(iobus_event_take_ack(NULL) == NULL);
    CHECK_ST(iobus_ack_send(NULL, "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    iobus_ack_free(NULL);
    CHECK(iobus_connect_namespace(NULL) == NULL);
    CHECK(iobus_connect_socket_id(NULL) == NULL);
    CHECK(iobus_connect_auth(NULL) == NULL);
    CHECK_ST(iobus_connect_handshake(NULL, &out, &len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_connect_accept(NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_connect_reject(NULL, "no", NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_STR(out, "sentinel");

    SECTION("calls after stop");
    CHECK_OK(iobus_server_stop(s));
    CHECK_OK(iobus_server_stop(s));
    check_not_running(s);
    /* Registration still works on a stopped server, and it starts again. */
    CHECK_OK(iobus_server_on_event(s, NULL, "e", noop_event, NULL));
    CHECK_OK(iobus_server_start(s, NULL, 0));
    static h_answer restarted = {"rooms after restart", 0, ""};
    CHECK_STR(ALL_ROOMS(s, NULL, &restarted), "[]");
    iobus_server_free(s);
}

static char *make_static_dir(void) {
    char tmpl[] = "/tmp/iobus-c-static-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return NULL;
    char path[256];
    snprintf(path, sizeof path, "%s/hello.txt", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("hello from the static dir\n", f);
        fclose(f);
    }
    return strdup(dir);
}

static void remove_static_dir(char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/hello.txt", dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}

int main(void) {
    h_init(120);
    test_version_and_errors();
    test_config_setters();
    char *dir = make_static_dir();
    CHECK(dir != NULL);
    if (dir) {
        test_config_effects(dir);
        remove_static_dir(dir);
    }
    test_lifecycle();
    test_bad_input();
    return h_finish("test_basics");
}
