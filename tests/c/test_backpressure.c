/*
 * Host backpressure: a host whose event callback takes 1 ms against a
 * socket.io-client peer that sends as fast as its connection takes it.
 *
 * - The queue of callbacks waiting for the host stays within its bound
 *   (iobus_server_pending, and the growth of this process's RSS), because
 *   the sender is held back instead: it cannot finish while the host is
 *   behind. Packets to clients keep flowing meanwhile, to the paused client
 *   and to another one. Once the host catches up, every event has arrived
 *   once and in order. On websocket and on long-polling.
 * - iobus_server_free with a large backlog returns within its free timeout
 *   (plus the stop), dropping the events it had no time for but still
 *   delivering the emit-with-ack completion and the disconnect it owes; on
 *   the dispatcher thread and in poll mode (where the host never polled, and
 *   the queue still stayed bounded).
 * - The setters refuse absurd values.
 *
 * Env: IOBUS_TEST_LOAD, the percentage of the full event counts to send
 * (default 100; the runner lowers it under Valgrind).
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "iobus.h"

/* AddressSanitizer keeps freed memory aside a while: RSS says little there. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* ---- the slow host ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int slow_us;   /* how long each "n" callback takes */
static long next_n;   /* the index the next "n" event must carry */
static long got_n;    /* "n" events received */
static long bad_order;
static int disconnects;

static void on_n(void *ud, const iobus_event *ev) {
    (void)ud;
    size_t len = 0;
    const char *args = iobus_event_args(ev, &len);
    long i = (args && len > 1) ? strtol(args + 1, NULL, 10) : -1;
    pthread_mutex_lock(&lock);
    int us = slow_us;
    if (i != next_n) bad_order++;
    next_n = i + 1;
    got_n++;
    pthread_mutex_unlock(&lock);
    if (us > 0) h_sleep_ms(us / 1000);
}

static void on_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    (void)ud;
    (void)nsp;
    (void)sid;
    (void)rooms;
    pthread_mutex_lock(&lock);
    disconnects++;
    pthread_mutex_unlock(&lock);
    h_log_add("disconnect reason=%s", reason);
}

typedef struct completion {
    int calls;
    int status;
} completion;

static void on_completion(void *ud, iobus_ack_status status, const iobus_event *reply) {
    (void)reply;
    completion *c = ud;
    pthread_mutex_lock(&lock);
    c->calls++;
    c->status = (int)status;
    pthread_mutex_unlock(&lock);
}

static void reset(int us) {
    pthread_mutex_lock(&lock);
    slow_us = us;
    next_n = 0;
    got_n = 0;
    bad_order = 0;
    disconnects = 0;
    pthread_mutex_unlock(&lock);
}

static void set_slow(int us) {
    pthread_mutex_lock(&lock);
    slow_us = us;
    pthread_mutex_unlock(&lock);
}

static long got(void) {
    pthread_mutex_lock(&lock);
    long n = got_n;
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- measures ---- */

static int load_percent = 100;

static int scaled(int full) {
    int n = full * load_percent / 100;
    return n < 200 ? 200 : n;
}

/* This process's resident set, in bytes. */
static size_t rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, resident = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t pending_bytes(iobus_server *s, size_t *callbacks) {
    size_t n = 0, bytes = 0;
    if (iobus_server_pending(s, &n, &bytes) != IOBUS_OK) CHECK_OK(iobus_server_pending(s, &n, &bytes));
    if (callbacks) *callbacks = n;
    return bytes;
}

/* What the peer reported of client `c`'s flood: events handed over so far
 * (-1: none yet); *done when it has written everything. */
static long flood_sent(peer *p, const char *c, int *done) {
    char flood[64], flooded[64];
    snprintf(flood, sizeof flood, "{\"t\":\"flood\",\"c\":\"%s\"", c);
    snprintf(flooded, sizeof flooded, "{\"t\":\"flooded\",\"c\":\"%s\"", c);
    *done = 0;
    for (int i = p->n_lines - 1; i >= 0; i--) {
        const char *l = p->lines[i];
        int is_done = strstr(l, flooded) != NULL;
        if (!is_done && !strstr(l, flood)) continue;
        const char *s = strstr(l, "\"sent\":");
        *done = is_done;
        return s ? strtol(s + 7, NULL, 10) : -1;
    }
    return -1;
}

/* Samples the host queue every few milliseconds for `ms`, reading the peer. */
static size_t watch(iobus_server *s, peer *p, int ms) {
    size_t max = 0;
    int64_t end = h_now_ms() + ms;
    while (h_now_ms() < end) {
        size_t b = pending_bytes(s, NULL);
        if (b > max) max = b;
        peer_read_available(p, 3);
    }
    return max;
}

/* Waits until the host queue holds at least `bytes`; the most it held. */
static size_t wait_backlog(iobus_server *s, peer *p, size_t bytes, int ms) {
    size_t max = 0;
    int64_t end = h_now_ms() + T(ms);
    while (h_now_ms() < end && max < bytes) {
        size_t b = pending_bytes(s, NULL);
        if (b > max) max = b;
        peer_read_available(p, 3);
    }
    return max;
}

static iobus_server *new_server(size_t limit, int free_timeout_ms, int poll_mode, int ping_interval, int ping_timeout) {
    iobus_server *s = NULL;
    iobus_config *cfg = iobus_config_new();
    if (limit) CHECK_OK(iobus_config_set_host_queue_limit(cfg, limit));
    if (free_timeout_ms >= 0) CHECK_OK(iobus_config_set_free_timeout(cfg, (uint64_t)free_timeout_ms));
    if (poll_mode) CHECK_OK(iobus_config_set_dispatch(cfg, IOBUS_DISPATCH_POLL));
    CHECK_OK(iobus_config_set_ping_interval(cfg, (uint64_t)ping_interval));
    CHECK_OK(iobus_config_set_ping_timeout(cfg, (uint64_t)ping_timeout));
    CHECK_OK(iobus_server_new(cfg, &s));
    iobus_config_free(cfg);
    CHECK_OK(iobus_server_on_event(s, NULL, "n", on_n, NULL));
    CHECK_OK(iobus_server_on_disconnect(s, NULL, on_disconnect, NULL));
    CHECK_OK(iobus_server_start(s, "127.0.0.1", 0));
    return s;
}

/* ---- the setters ---- */

static void test_setters(void) {
    SECTION("setters: host queue limit and free timeout refuse absurd values");
    iobus_config *cfg = iobus_config_new();
    CHECK_ST(iobus_config_set_host_queue_limit(NULL, 1 << 20), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_host_queue_limit(cfg, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_host_queue_limit(cfg, 16 * 1024 - 1), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_host_queue_limit(cfg, SIZE_MAX), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "host queue limit");
    CHECK_OK(iobus_config_set_host_queue_limit(cfg, 16 * 1024));
    CHECK_OK(iobus_config_set_host_queue_limit(cfg, (size_t)64 << 20));
    CHECK_ST(iobus_config_set_free_timeout(NULL, 10), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_free_timeout(cfg, 600001), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_config_set_free_timeout(cfg, UINT64_MAX), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "free timeout");
    CHECK_OK(iobus_config_set_free_timeout(cfg, 0));
    CHECK_OK(iobus_config_set_free_timeout(cfg, 600000));
    iobus_config_free(cfg);

    size_t n = 7, bytes = 7;
    CHECK_ST(iobus_server_pending(NULL, &n, &bytes), IOBUS_ERR_NULL_ARGUMENT);
    CHECK(n == 7 && bytes == 7);
    iobus_server *s = NULL;
    CHECK_OK(iobus_server_new(NULL, &s));
    CHECK_OK(iobus_server_pending(s, &n, &bytes));
    CHECK(n == 0 && bytes == 0);
    CHECK_OK(iobus_server_pending(s, NULL, NULL));
    iobus_server_free(s);
}

/* ---- a flood against a slow host ---- */

static void test_flood(const char *title, const char *transports, int count, int size, size_t limit, size_t slack) {
    SECTION(title);
    h_log_clear();
    /* Fewer events (Valgrind): a smaller queue, so that it still fills. */
    if (load_percent < 100) limit = 64 * 1024;
    char needle[160];
    /* A flooding client's pongs wait behind what its connection holds
     * (megabytes here, read slowly by a debug build on a busy machine): the
     * ping timeout leaves room for that. */
    iobus_server *s = new_server(limit, -1, 0, T(500), T(3000));
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(s, &port));
    peer *p = peer_start(port);
    if (!p) {
        iobus_server_free(s);
        return;
    }
    char sid_f[32] = "", sid_k[32] = "";
    snprintf(needle, sizeof needle, "\"transports\":%s", transports);
    CHECK(peer_connect(p, "f", needle, sid_f, sizeof sid_f));
    CHECK(peer_connect(p, "k", "", sid_k, sizeof sid_k));

    reset(1000);
    size_t rss_before = rss();
    int64_t start = h_now_ms();
    peer_cmd(p, "{\"op\":\"flood\",\"c\":\"f\",\"event\":\"n\",\"count\":%d,\"size\":%d,\"every\":100}", count, size);
    /* Half-way, the connection's buffers have filled; from then on the
     * sender goes at the host's pace. */
    size_t max = watch(s, p, 750);
    int done = 0;
    long sent_half = flood_sent(p, "f", &done);
    long host_half = got();
    size_t max2 = watch(s, p, 750);
    if (max2 > max) max = max2;
    size_t rss_growth = rss() - rss_before;
    long sent = flood_sent(p, "f", &done);
    long host = got();

    /* The queue filled up to its bound (unless the network side is the
     * slower one, as under Valgrind), and no further. */
    if (load_percent == 100) CHECK(max >= limit / 2);
    CHECK(max <= limit + slack);
    /* The sender is held back: what it handed over is what the host ran,
     * the queue and the connection's buffers hold, far from everything
     * (with fewer events, the connection's buffers may take them all). */
    if (load_percent == 100) CHECK(!done && sent < count / 2);
    /* Packets to clients go on meanwhile, to the paused one and the other. */
    CHECK_OK(iobus_socket_emit(s, sid_f, "hello", "[\"f\"]", SIZE_MAX, NULL, 0));
    CHECK_OK(iobus_socket_emit(s, sid_k, "hello", "[\"k\"]", SIZE_MAX, NULL, 0));
    CHECK(PEER_WAIT(p, "{\"t\":\"event\",\"c\":\"f\",\"event\":\"hello\"", 3000) != NULL);
    CHECK(PEER_WAIT(p, "{\"t\":\"event\",\"c\":\"k\",\"event\":\"hello\"", 3000) != NULL);
    flood_sent(p, "f", &done);
    if (load_percent == 100) CHECK(!done);
    printf("#   slow host (1 ms per event), after 1.5 s: host ran %ld events, the client handed over %ld of %d "
           "(in the last 0.75 s: host %ld, client %ld); host queue at most %zu bytes (limit %zu); RSS +%zu KiB\n",
           host, sent, count, host - host_half, sent - sent_half, max, limit, rss_growth / 1024);
    if (load_percent == 100 && strstr(transports, "websocket") && !UNDER_ASAN) {
        /* Unbounded, the events the client sent would all be held here
         * (over count × size bytes). */
        CHECK(rss_growth < (size_t)count * (size_t)size / 2);
    }

    /* The host catches up: everything arrives, once and in order. */
    set_slow(0);
    snprintf(needle, sizeof needle, "{\"t\":\"flooded\",\"c\":\"f\"");
    const char *l = PEER_WAIT(p, needle, 60000);
    CHECK(l != NULL);
    int64_t end = h_now_ms() + T(20000);
    while (got() < count && h_now_ms() < end) peer_read_available(p, 5);
    pthread_mutex_lock(&lock);
    CHECK(got_n == count);
    CHECK(bad_order == 0);
    pthread_mutex_unlock(&lock);
    end = h_now_ms() + T(5000);
    while (pending_bytes(s, NULL) > 0 && h_now_ms() < end) h_sleep_ms(5);
    CHECK(pending_bytes(s, NULL) == 0);
    CHECK(peer_count(p, "{\"t\":\"disconnect\"") == 0);
    if (!CHECK(h_log_count("disconnect reason=") == 0)) {
        for (int i = h_log_take("disconnect reason="); i >= 0; i = h_log_take("disconnect reason=")) {
            char *rec = h_log_get(i);
            fprintf(stderr, "  the host saw: %s\n", rec ? rec : "?");
            free(rec);
        }
    }
    printf("#   then the host sped up: the client finished after %lld ms; %s\n", (long long)(h_now_ms() - start),
           l ? l : "(no report)");
    peer_stop(p);
    iobus_server_free(s);
}

/* ---- a pause longer than the ping timeout ---- */

static void test_long_pause(const char *transports) {
    char title[160];
    snprintf(title, sizeof title, "%s: paused longer than the ping timeout, the session lives on", transports);
    SECTION(title);
    h_log_clear();
    /* A host in poll mode that does not poll for a while, a small queue
     * limit, and pings far shorter than the pause. */
    iobus_server *s = new_server(64 * 1024, -1, 1, T(200), T(300));
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(s, &port));
    peer *p = peer_start(port);
    if (!p) {
        iobus_server_free(s);
        return;
    }
    char sid[32] = "", extra[64];
    snprintf(extra, sizeof extra, "\"transports\":%s", transports);
    CHECK(peer_connect(p, "f", extra, sid, sizeof sid));
    reset(0);
    const int count = 600;
    peer_cmd(p, "{\"op\":\"flood\",\"c\":\"f\",\"event\":\"n\",\"count\":%d,\"size\":1024}", count);
    size_t max = watch(s, p, T(1000));
    /* The rest waits in the connection (it fits in its buffers here). */
    size_t queued = 0;
    pending_bytes(s, &queued);
    CHECK(queued < (size_t)count / 2);
    CHECK(max >= 32 * 1024 && max <= 64 * 1024 + 65 * 2048);
    /* The host takes its callbacks again: everything arrives, nobody left. */
    int64_t end = h_now_ms() + T(20000);
    while (got() < count && h_now_ms() < end) {
        size_t n = 0;
        iobus_server_poll(s, 256, &n);
        peer_read_available(p, n > 0 ? 0 : 2);
    }
    pthread_mutex_lock(&lock);
    CHECK(got_n == count);
    CHECK(bad_order == 0);
    pthread_mutex_unlock(&lock);
    CHECK(PEER_WAIT(p, "{\"t\":\"flooded\",\"c\":\"f\"", 5000) != NULL);
    CHECK_OK(iobus_socket_emit(s, sid, "hello", "[]", SIZE_MAX, NULL, 0));
    CHECK(PEER_WAIT(p, "{\"t\":\"event\",\"c\":\"f\",\"event\":\"hello\"", 3000) != NULL);
    CHECK(peer_count(p, "{\"t\":\"disconnect\"") == 0);
    size_t n = 0;
    iobus_server_poll(s, 256, &n);
    CHECK(h_log_count("disconnect reason=") == 0);
    peer_stop(p);
    iobus_server_free(s);
}

/* ---- iobus_server_free with a backlog ---- */

static void test_free(int poll_mode) {
    SECTION(poll_mode ? "free in poll mode: a backlog the host never polled is cut at the free timeout"
                      : "free on the dispatcher thread: a backlog is cut at the free timeout");
    h_log_clear();
    const int free_timeout = 300;
    /* The default limit (4 MiB). */
    iobus_server *s = new_server(0, free_timeout, poll_mode, 1000, 3000);
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(s, &port));
    peer *p = peer_start(port);
    if (!p) {
        iobus_server_free(s);
        return;
    }
    char sid[32] = "";
    CHECK(peer_connect(p, "f", "", sid, sizeof sid));
    static completion owed;
    owed.calls = 0;
    owed.status = -1;
    peer_reply(p, "f", "q", "\"mode\":\"ignore\"");
    CHECK_OK(iobus_socket_emit_with_ack(s, sid, "q", "[]", SIZE_MAX, NULL, 0, 0, on_completion, &owed));
    CHECK(PEER_WAIT(p, "{\"t\":\"event\",\"c\":\"f\",\"event\":\"q\"", 5000) != NULL);

    reset(1000);
    int count = scaled(20000);
    peer_cmd(p, "{\"op\":\"flood\",\"c\":\"f\",\"event\":\"n\",\"count\":%d,\"size\":1024}", count);
    size_t want = load_percent == 100 ? (size_t)2 << 20 : (size_t)count * 1024 / 4;
    size_t max = wait_backlog(s, p, want, 10000);
    /* At reduced load (under Valgrind, where the sender is as slow as the
     * host) a dispatcher thread may keep up: the backlog is only certain at
     * full load, or when nobody polls. */
    if (load_percent == 100 || poll_mode) CHECK(max >= want);
    if (poll_mode) {
        /* Nobody polls: the queue stops at its bound, the sender waits. */
        max = watch(s, p, 500);
        CHECK(max <= ((size_t)4 << 20) + 64 * 1024);
        int done = 0;
        flood_sent(p, "f", &done);
        if (load_percent == 100) CHECK(!done);
    }
    size_t queued = 0;
    size_t bytes = pending_bytes(s, &queued);
    long before = got();
    int64_t t0 = h_now_ms();
    iobus_server_free(s);
    int64_t took = h_now_ms() - t0;
    long ran = got() - before;
    printf("#   %s: %zu callbacks (%zu bytes) pending; free ran %ld of them and returned after %lld ms "
           "(free timeout %d ms)\n",
           poll_mode ? "poll mode" : "dispatcher thread", queued, bytes, ran, (long long)took, free_timeout);
    /* Bounded by the free timeout and the stop (about 0.5 s), not by the
     * backlog (over a second of callbacks). */
    CHECK(took < T(2000));
    if (queued > 0) CHECK(ran < (long)queued);
    /* What the host is owed still came, exactly once. */
    pthread_mutex_lock(&lock);
    CHECK(owed.calls == 1);
    CHECK(owed.status == IOBUS_ACK_DISCONNECTED);
    CHECK(disconnects == 1);
    pthread_mutex_unlock(&lock);
    CHECK(h_log_take("disconnect reason=server shutting down") >= 0);
    peer_stop(p);
}

int main(void) {
    h_init(180);
    const char *load = getenv("IOBUS_TEST_LOAD");
    if (load && atoi(load) > 0 && atoi(load) <= 100) load_percent = atoi(load);

    test_setters();
    /* A websocket read takes at most 32 messages past the bound. */
    test_flood("websocket: a slow host holds the sender back; the queue stays bounded; all arrive in order",
               "[\"websocket\"]", scaled(20000), 2048, (size_t)1 << 20, 32 * 3072);
    /* A polling POST carries at most 65 of the client's packets here. */
    test_flood("polling: the POST is answered when the host has caught up", "[\"polling\"]", scaled(5000), 1024,
               (size_t)1 << 20, 65 * 2048);
    test_long_pause("[\"websocket\"]");
    test_long_pause("[\"polling\"]");
    test_free(0);
    test_free(1);
    h_log_clear();
    return h_finish("test_backpressure");
}
