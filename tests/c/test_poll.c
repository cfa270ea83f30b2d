/*
 * IOBUS_DISPATCH_POLL against real socket.io-client peers: callbacks run on
 * the host's thread inside iobus_server_poll(), driven by epoll (and by
 * poll() in the harness's waits) on iobus_server_poll_fd(); they never
 * overlap, even with two host threads polling; events keep their order;
 * max_events bounds a poll and the descriptor stays readable while work
 * remains; polling from a callback is refused; stop from a callback; work
 * still queued at free is dropped without leaks.
 */
#define _GNU_SOURCE

#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "harness.h"
#include "iobus.h"

static iobus_server *server;
static pthread_t main_thread;

static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static int cb_depth, cb_overlaps, cb_calls, cb_off_main, cb_on_helper;
static pthread_t helper_thread;
static int helper_running;

static void enter_cb(void) {
    pthread_mutex_lock(&cb_lock);
    if (cb_depth > 0) cb_overlaps++;
    cb_depth++;
    cb_calls++;
    if (!pthread_equal(pthread_self(), main_thread)) {
        if (helper_running && pthread_equal(pthread_self(), helper_thread)) cb_on_helper++;
        else cb_off_main++;
    }
    pthread_mutex_unlock(&cb_lock);
}

static void leave_cb(void) {
    pthread_mutex_lock(&cb_lock);
    cb_depth--;
    pthread_mutex_unlock(&cb_lock);
}

static int readable(int fd) {
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* ---- callbacks ---- */

static void *accept_from_thread(void *req);

static void on_connect(void *ud, iobus_connect *req) {
    enter_cb();
    (void)ud;
    h_log_add("connect sid=%s auth=%s", iobus_connect_socket_id(req), iobus_connect_auth(req));
    if (strstr(iobus_connect_auth(req), "later")) {
        pthread_t t;
        /* Answered from another thread while this one keeps polling. */
        if (pthread_create(&t, NULL, accept_from_thread, req) == 0) pthread_detach(t);
    } else {
        CHECK_OK(iobus_connect_accept(req));
    }
    leave_cb();
}

static void *accept_from_thread(void *req) {
    h_sleep_ms(50);
    CHECK_OK(iobus_connect_accept(req));
    h_log_add("accepted from a thread");
    return NULL;
}

static void on_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    enter_cb();
    (void)ud;
    (void)rooms;
    h_log_add("disconnect nsp=%s sid=%s reason=%s", nsp, sid, reason);
    leave_cb();
}

/* Sequence numbers per client: `seq` carries [client, n]. */
static int next_n[4];
static int order_bad;
static void on_seq(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    const char *args = iobus_event_args(ev, NULL);
    int n = -1;
    /* Events are [n] from client o1 (burst) — one counter per socket id. */
    static char sids[4][32];
    const char *sid = iobus_event_socket_id(ev);
    int k = 0;
    for (; k < 4; k++) {
        if (sids[k][0] == '\0') {
            snprintf(sids[k], sizeof sids[k], "%s", sid);
            break;
        }
        if (strcmp(sids[k], sid) == 0) break;
    }
    if (args) n = atoi(args + 1);
    if (k < 4) {
        if (n != next_n[k]) order_bad++;
        next_n[k] = n + 1;
    }
    if (n == 299) h_log_add("seq done %d", k);
    leave_cb();
}

static void on_echo(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    size_t len;
    const char *args = iobus_event_args(ev, &len);
    h_log_add("echo args=%s", args);
    /* Polling from inside a callback is refused; emitting is fine. */
    size_t n = 42;
    CHECK_ST(iobus_server_poll(server, 10, &n), IOBUS_ERR_WRONG_STATE);
    CHECK(n == 42);
    CHECK_OK(iobus_socket_emit(server, iobus_event_socket_id(ev), "echo", args, len, NULL, 0));
    iobus_ack *ack = iobus_event_take_ack(ev);
    if (ack) CHECK_OK(iobus_ack_send(ack, args, len, NULL, 0));
    leave_cb();
}

static void on_count(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    (void)ev;
    h_log_add("count");
    leave_cb();
}

static void on_stop(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    (void)ev;
    CHECK_OK(iobus_server_stop(server));
    h_log_add("stopped inside");
    leave_cb();
}

static int completions;
static int completion_status = -1;
static void on_completion(void *ud, iobus_ack_status st, const iobus_event *reply) {
    enter_cb();
    (void)ud;
    completions++;
    completion_status = (int)st;
    h_log_add("completion %d %s", (int)st, reply ? iobus_event_args(reply, NULL) : "-");
    leave_cb();
}

/* ---- records: iobus_server_poll_records ---- */

typedef struct {
    uint32_t size;
    uint8_t kind, status;
    uint64_t user, handle;
    const uint8_t *at, *end; /* the fields not read yet */
} record;

static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Reads the record at *p (of the `left` bytes there); advances *p. */
static int next_record(const uint8_t **p, size_t *left, record *r) {
    if (*left < 24) return 0;
    r->size = get_u32(*p);
    if (r->size < 24 || r->size > *left) return 0;
    r->kind = (*p)[4];
    r->status = (*p)[5];
    r->user = get_u64(*p + 8);
    r->handle = get_u64(*p + 16);
    r->at = *p + 24;
    r->end = *p + r->size;
    *p += r->size;
    *left -= r->size;
    return 1;
}

/* The next field as a NUL-terminated copy in out (truncated to cap); -1 past the end. */
static long next_field(record *r, char *out, size_t cap) {
    if (r->end - r->at < 4) return -1;
    uint32_t n = get_u32(r->at);
    if ((size_t)(r->end - r->at) < 4 + (size_t)n) return -1;
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(out, r->at + 4, k);
    out[k] = '\0';
    r->at += 4 + n;
    return (long)n;
}

static uint32_t next_count(record *r) {
    if (r->end - r->at < 4) return UINT32_MAX;
    uint32_t n = get_u32(r->at);
    r->at += 4;
    return n;
}

/* Takes records until `want` of them have been seen or the time is up. */
static uint8_t rec_buf[65536];
static int take_records(uint8_t *buf, size_t cap, size_t *len, int want, int ms) {
    int64_t deadline = h_now_ms() + T(ms);
    size_t used = 0;
    int got = 0;
    while (got < want && h_now_ms() < deadline) {
        size_t n = 0, count = 0;
        CHECK_OK(iobus_server_poll_records(server, buf + used, cap - used, &n, &count));
        used += n;
        got += (int)count;
        if (got < want) h_sleep_ms(10);
    }
    *len = used;
    return got;
}

/* ---- a second host thread that polls too ---- */

static volatile int helper_stop;
static void *helper_main(void *arg) {
    (void)arg;
    int fd = iobus_server_poll_fd(server);
    while (!helper_stop) {
        struct pollfd p;
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 5) > 0) {
            size_t n = 0;
            iobus_server_poll(server, 3, &n);
        }
    }
    return NULL;
}

/* ---- the sections ---- */

/* Waits with epoll on the server's descriptor and the peer's output. */
static int epoll_wait_for(int ep, peer *p, const char *needle, int ms) {
    int64_t deadline = h_now_ms() + T(ms);
    while (h_now_ms() < deadline) {
        if (h_log_take(needle) >= 0) return 1;
        struct epoll_event evs[4];
        int n = epoll_wait(ep, evs, 4, 20);
        int ready = 0;
        for (int i = 0; i < n; i++) ready |= evs[i].data.u32 == 1;
        h_poll_server(server, ready);
        peer_read_available(p, 0);
    }
    h_check(0, needle, __FILE__, __LINE__);
    return 0;
}

int main(void) {
    h_init(180);
    main_thread = pthread_self();
    iobus_config *cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_dispatch(cfg, IOBUS_DISPATCH_POLL));
    CHECK_OK(iobus_config_set_worker_threads(cfg, 2));
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);
    CHECK_OK(iobus_server_on_connect(server, NULL, on_connect, NULL));
    CHECK_OK(iobus_server_on_disconnect(server, NULL, on_disconnect, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "seq", on_seq, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "echo", on_echo, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "count", on_count, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "stop", on_stop, NULL));
    CHECK_OK(iobus_server_start(server, NULL, 0));
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(server, &port));
    h_pump_server = server;

    int fd = iobus_server_poll_fd(server);
    CHECK(fd >= 0);
    CHECK(iobus_server_poll_fd(server) == fd);
    CHECK(!readable(fd));

    peer *p = peer_start(port);
    if (!p) return h_finish("test_poll");
    char sid[32], sid2[32];

    SECTION("epoll on the descriptor: callbacks on this thread");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u32 = 1;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"a\"}");
    CHECK(epoll_wait_for(ep, p, "connect sid=", 5000));
    const char *l = PEER_WAIT(p, "{\"t\":\"connect\",\"c\":\"a\"", 5000);
    CHECK(l && h_json_field(l, "sid", sid, sizeof sid));
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[\"hi\"],\"ack\":true,\"seq\":1}");
    CHECK(epoll_wait_for(ep, p, "echo args=[\"hi\"]", 5000));
    PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"a\",\"seq\":1,\"args\":[\"hi\"]}", 5000);
    PEER_WAIT(p, "{\"t\":\"event\",\"c\":\"a\",\"event\":\"echo\",\"args\":[\"hi\"]", 5000);
    CHECK_OK(iobus_socket_emit_with_ack(server, sid, "ask", "[1]", SIZE_MAX, NULL, 0, T(5000), on_completion, NULL));
    CHECK(epoll_wait_for(ep, p, "completion 0 [1]", 5000));
    close(ep);

    SECTION("connect answered from another thread while polling");
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"l\",\"auth\":{\"later\":true}}");
    PEER_WAIT(p, "{\"t\":\"connect\",\"c\":\"l\"", 5000);
    LOG_WAIT("accepted from a thread", 5000);

    SECTION("max_events bounds a poll; the descriptor stays readable while work remains");
    /* Nothing is polled while the events arrive. */
    h_pump_server = NULL;
    peer_cmd(p, "{\"op\":\"burst\",\"c\":\"a\",\"event\":\"count\",\"count\":20,\"seq\":7}");
    PEER_WAIT(p, "{\"t\":\"sent\",\"c\":\"a\",\"seq\":7}", 5000);
    int64_t deadline = h_now_ms() + T(3000);
    while (!readable(fd) && h_now_ms() < deadline) h_sleep_ms(5);
    CHECK(readable(fd));
    h_sleep_ms(T(100));
    CHECK(h_log_count("count") == 0);
    size_t n = 0;
    CHECK_OK(iobus_server_poll(server, 1, &n));
    CHECK(n == 1);
    CHECK(readable(fd));
    CHECK_OK(iobus_server_poll(server, 4, &n));
    CHECK(n == 4);
    CHECK(readable(fd));
    CHECK_OK(iobus_server_poll(server, 0, &n));
    CHECK(n == 0);
    size_t total = 5;
    deadline = h_now_ms() + T(3000);
    while (total < 20 && h_now_ms() < deadline) {
        CHECK_OK(iobus_server_poll(server, 1000, &n));
        total += n;
        if (total < 20) h_sleep_ms(10);
    }
    CHECK(total == 20);
    CHECK(!readable(fd));
    CHECK(h_log_count("count") == 20);
    CHECK_OK(iobus_server_poll(server, 1000, NULL));
    h_pump_server = server;

    SECTION("order, and no overlap with two host threads polling");
    CHECK(peer_connect(p, "b", "", sid2, sizeof sid2));
    helper_running = 1;
    CHECK(pthread_create(&helper_thread, NULL, helper_main, NULL) == 0);
    peer_cmd(p, "{\"op\":\"burst\",\"c\":\"a\",\"event\":\"seq\",\"count\":300}");
    peer_cmd(p, "{\"op\":\"burst\",\"c\":\"b\",\"event\":\"seq\",\"count\":300}");
    LOG_WAIT("seq done", 10000);
    LOG_WAIT("seq done", 10000);
    helper_stop = 1;
    pthread_join(helper_thread, NULL);
    CHECK(order_bad == 0);
    pthread_mutex_lock(&cb_lock);
    CHECK(cb_overlaps == 0);
    CHECK(cb_off_main == 0); /* only the two polling threads ran callbacks */
    pthread_mutex_unlock(&cb_lock);
    printf("# callbacks: %d on this thread and the helper (%d on the helper), %d polls here\n", cb_calls, cb_on_helper,
           h_pump_calls);

    SECTION("the descriptor wakes the host for every callback (bursts from two clients)");
    int before = h_log_count("count");
    for (int round = 0; round < 2; round++) {
        peer_cmd(p, "{\"op\":\"burst\",\"c\":\"a\",\"event\":\"count\",\"count\":500}");
        peer_cmd(p, "{\"op\":\"burst\",\"c\":\"b\",\"event\":\"count\",\"count\":500}");
        int64_t until = h_now_ms() + T(10000);
        while (h_log_count("count") < before + 1000 * (round + 1) && h_now_ms() < until) h_pump_once(20);
    }
    CHECK(h_log_count("count") == before + 2000);

    SECTION("records: pending callbacks as records in one buffer");
    h_pump_server = NULL;
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"r\"}");
    deadline = h_now_ms() + T(5000);
    while (!readable(fd) && h_now_ms() < deadline) h_sleep_ms(5);
    CHECK(readable(fd));
    {
        /* Too small for the first record: nothing taken, its size reported. */
        size_t need = 0, count = 7;
        CHECK_ST(iobus_server_poll_records(server, rec_buf, 8, &need, &count), IOBUS_ERR_INVALID_ARGUMENT);
        CHECK(need > 24 && count == 0);
        CHECK(strstr(iobus_last_error(), "bytes") != NULL);
        CHECK(readable(fd));
        CHECK_ST(iobus_server_poll_records(NULL, rec_buf, sizeof rec_buf, &need, &count), IOBUS_ERR_NULL_ARGUMENT);
        CHECK_ST(iobus_server_poll_records(server, NULL, 64, &need, &count), IOBUS_ERR_NULL_ARGUMENT);
        size_t len = 0;
        CHECK(take_records(rec_buf, sizeof rec_buf, &len, 1, 5000) == 1);
        CHECK(len == need);
        const uint8_t *at = rec_buf;
        record r;
        char f1[256], f2[64], f3[512];
        CHECK(next_record(&at, &len, &r));
        CHECK(r.kind == IOBUS_RECORD_CONNECT && r.status == 0 && r.user == 0 && r.handle != 0);
        CHECK(next_field(&r, f1, sizeof f1) == 1 && strcmp(f1, "/") == 0);
        CHECK(next_field(&r, f2, sizeof f2) > 0);
        CHECK(next_field(&r, f3, sizeof f3) > 0 && strstr(f3, "\"headers\"") != NULL);
        CHECK(r.at == r.end && len == 0);
        char rsid[64];
        snprintf(rsid, sizeof rsid, "%s", f2);
        /* The handle is the host's, as in the callback. */
        CHECK_OK(iobus_connect_accept((iobus_connect *)(uintptr_t)r.handle));
        const char *cl = PEER_WAIT(p, "{\"t\":\"connect\",\"c\":\"r\"", 5000);
        char psid[64];
        CHECK(cl && h_json_field(cl, "sid", psid, sizeof psid) && strcmp(psid, rsid) == 0);
        CHECK(!readable(fd));

        /* An event with an ack and a binary attachment, one without, and an ack reply. */
        peer_cmd(p, "{\"op\":\"emit\",\"c\":\"r\",\"event\":\"echo\",\"args\":[\"r1\",{\"$bin\":\"AAEC\"}],"
                    "\"ack\":true,\"seq\":31}");
        peer_cmd(p, "{\"op\":\"emit\",\"c\":\"r\",\"event\":\"count\",\"args\":[],\"seq\":32}");
        PEER_WAIT(p, "{\"t\":\"sent\",\"c\":\"r\",\"seq\":32}", 5000);
        CHECK_OK(iobus_socket_emit_with_ack(server, rsid, "ask", "[\"q\"]", SIZE_MAX, NULL, 0, T(5000), on_completion,
                                            (void *)(uintptr_t)77));
        CHECK(take_records(rec_buf, sizeof rec_buf, &len, 3, 5000) == 3);
        at = rec_buf;
        int events = 0, acks = 0;
        while (next_record(&at, &len, &r)) {
            CHECK(next_field(&r, f1, sizeof f1) == 1 && strcmp(f1, "/") == 0);
            CHECK(next_field(&r, f2, sizeof f2) > 0 && strcmp(f2, rsid) == 0);
            if (r.kind == IOBUS_RECORD_EVENT) {
                events++;
                CHECK(next_field(&r, f1, sizeof f1) > 0);
                CHECK(next_field(&r, f3, sizeof f3) > 0);
                uint32_t nbin = next_count(&r);
                if (strcmp(f1, "echo") == 0) {
                    CHECK_STR(f3, "[\"r1\",{\"_placeholder\":true,\"num\":0}]");
                    CHECK(nbin == 1);
                    CHECK(next_field(&r, f2, sizeof f2) == 3 && memcmp(f2, "\x00\x01\x02", 3) == 0);
                    CHECK(r.handle != 0);
                    iobus_buf bin = {(const uint8_t *)"\x05", 1};
                    CHECK_OK(iobus_ack_send((iobus_ack *)(uintptr_t)r.handle, "[\"back\",{\"_placeholder\":true,\"num\":0}]",
                                            SIZE_MAX, &bin, 1));
                } else {
                    CHECK_STR(f1, "count");
                    CHECK_STR(f3, "[]");
                    CHECK(nbin == 0 && r.handle == 0);
                }
            } else {
                acks++;
                CHECK(r.kind == IOBUS_RECORD_ACK && r.status == IOBUS_ACK_OK && r.user == 77 && r.handle == 0);
                CHECK(next_field(&r, f3, sizeof f3) > 0);
                CHECK_STR(f3, "[\"q\"]");
                CHECK(next_count(&r) == 0);
            }
            CHECK(r.at == r.end);
        }
        CHECK(events == 2 && acks == 1 && len == 0);
        PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"r\",\"seq\":31,\"args\":[\"back\",{\"$bin\":\"BQ==\"}]}", 5000);
        CHECK(completions == 1); /* the record stood in for the callback */

        /* A disconnect. */
        peer_cmd(p, "{\"op\":\"disconnect\",\"c\":\"r\"}");
        CHECK(take_records(rec_buf, sizeof rec_buf, &len, 1, 5000) == 1);
        at = rec_buf;
        CHECK(next_record(&at, &len, &r));
        CHECK(r.kind == IOBUS_RECORD_DISCONNECT && r.handle == 0);
        CHECK(next_field(&r, f1, sizeof f1) == 1);
        CHECK(next_field(&r, f2, sizeof f2) > 0 && strcmp(f2, rsid) == 0);
        CHECK(next_field(&r, f3, sizeof f3) > 0);
        CHECK_STR(f3, "client namespace disconnect");
        CHECK(next_field(&r, f3, sizeof f3) > 0);
        CHECK(strstr(f3, rsid) != NULL);
        CHECK(r.at == r.end);
        CHECK(!readable(fd));
    }
    h_pump_server = server;

    SECTION("stop from a callback; the rest runs at the next poll; restart");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"b\",\"event\":\"stop\",\"args\":[]}");
    LOG_WAIT("stopped inside", 5000);
    char needle[128];
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s reason=server shutting down", sid);
    LOG_WAIT(needle, 5000);
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s reason=server shutting down", sid2);
    LOG_WAIT(needle, 5000);
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"a\"", 5000);
    CHECK_OK(iobus_server_start(server, NULL, port));
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"c\"}");
    PEER_WAIT(p, "{\"t\":\"connect\",\"c\":\"c\"", 5000);
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"c\",\"event\":\"echo\",\"args\":[2],\"ack\":true,\"seq\":2}");
    PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"c\",\"seq\":2,\"args\":[2]}", 5000);

    SECTION("free with callbacks still queued");
    h_pump_server = NULL;
    peer_cmd(p, "{\"op\":\"burst\",\"c\":\"c\",\"event\":\"count\",\"count\":10,\"seq\":9}");
    PEER_WAIT(p, "{\"t\":\"sent\",\"c\":\"c\",\"seq\":9}", 5000);
    deadline = h_now_ms() + T(3000);
    while (!readable(fd) && h_now_ms() < deadline) h_sleep_ms(5);
    CHECK(readable(fd));
    h_sleep_ms(T(100));
    int counted = h_log_count("count");
    /* Queued callbacks run, on this thread, before free returns. */
    iobus_server_free(server);
    server = NULL;
    CHECK(h_log_count("count") > counted);
    peer_stop(p);
    CHECK(completions == 1);
    h_log_clear();
    return h_finish("test_poll");
}
