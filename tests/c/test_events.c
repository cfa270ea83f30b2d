/*
 * The C API against real socket.io-client peers, callbacks on the library's
 * dispatcher thread: connections accepted and refused (now, and later from
 * another thread), events with JSON and binary both ways, acks both ways
 * (answered later from another thread; emit-with-ack ending in a reply, a
 * timeout or a disconnect, each exactly once), rooms, namespace emits with
 * rooms / except rooms / except sid / volatile, the namespace operations,
 * handshakes, namespace patterns, disconnect reasons, calls from inside
 * callbacks (emit, stop), and callbacks that never overlap and keep order.
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

#define BAD_UTF8 "\xff\xfe"

static iobus_server *server;

/* ---- callbacks never overlap, and all run on one thread that is not ours ---- */

static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static int cb_depth;
static int cb_overlaps;
static int cb_calls;
static int cb_thread_known;
static pthread_t cb_thread;
static int cb_other_threads;
static pthread_t main_thread;

static void enter_cb(void) {
    pthread_mutex_lock(&cb_lock);
    if (cb_depth > 0) cb_overlaps++;
    cb_depth++;
    cb_calls++;
    if (!cb_thread_known) {
        cb_thread = pthread_self();
        cb_thread_known = 1;
    } else if (!pthread_equal(cb_thread, pthread_self())) {
        cb_other_threads++;
    }
    pthread_mutex_unlock(&cb_lock);
}

static void leave_cb(void) {
    pthread_mutex_lock(&cb_lock);
    cb_depth--;
    pthread_mutex_unlock(&cb_lock);
}

/* ---- work done later on other threads ---- */

#define MAX_LATER 64
static pthread_t later_threads[MAX_LATER];
static int later_count;
static pthread_mutex_t later_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct later_job {
    int delay_ms;
    void (*fn)(void *);
    void *arg;
} later_job;

static void *later_main(void *p) {
    later_job *job = p;
    h_sleep_ms(job->delay_ms);
    job->fn(job->arg);
    free(job);
    return NULL;
}

static void later(int delay_ms, void (*fn)(void *), void *arg) {
    later_job *job = malloc(sizeof *job);
    if (!job) abort();
    job->delay_ms = delay_ms;
    job->fn = fn;
    job->arg = arg;
    pthread_mutex_lock(&later_lock);
    if (later_count < MAX_LATER && pthread_create(&later_threads[later_count], NULL, later_main, job) == 0) {
        later_count++;
    } else {
        h_check(0, "start a helper thread", __FILE__, __LINE__);
        free(job);
    }
    pthread_mutex_unlock(&later_lock);
}

static void join_later(void) {
    pthread_mutex_lock(&later_lock);
    int n = later_count;
    later_count = 0;
    pthread_mutex_unlock(&later_lock);
    for (int i = 0; i < n; i++) pthread_join(later_threads[i], NULL);
}

/* ---- connections ---- */

static void accept_later(void *req) {
    CHECK_OK(iobus_connect_accept(req));
    h_log_add("accepted later");
}

static void reject_later(void *req) {
    CHECK_OK(iobus_connect_reject(req, "Later, no", "[1,2]", SIZE_MAX));
    h_log_add("rejected later");
}

static void on_connect(void *ud, iobus_connect *req) {
    enter_cb();
    CHECK(ud == &server);
    const char *nsp = iobus_connect_namespace(req);
    const char *sid = iobus_connect_socket_id(req);
    const char *auth = iobus_connect_auth(req);
    CHECK(nsp && sid && auth);
    CHECK(sid && strlen(sid) == 20);
    char *hs = NULL;
    size_t hs_len = 0;
    CHECK_ST(iobus_connect_handshake(req, NULL, &hs_len), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_OK(iobus_connect_handshake(req, &hs, &hs_len));
    CHECK(hs && strlen(hs) == hs_len);
    char *hs2 = NULL;
    CHECK_OK(iobus_connect_handshake(req, &hs2, NULL));
    CHECK_STR(hs2, hs);
    iobus_string_free(hs2);
    h_log_add("connect nsp=%s sid=%s auth=%s handshake=%s", nsp, sid, auth, hs ? hs : "");
    iobus_string_free(hs);

    if (strstr(auth, "\"mode\":\"reject\"")) {
        CHECK_OK(iobus_connect_reject(req, "Not authorized", "{\"reason\":\"bad token\",\"code\":42}", SIZE_MAX));
    } else if (strstr(auth, "\"mode\":\"reject_plain\"")) {
        CHECK_OK(iobus_connect_reject(req, NULL, NULL, 0));
    } else if (strstr(auth, "\"mode\":\"later_accept\"")) {
        later(150, accept_later, req);
        h_log_add("connect callback returned");
    } else if (strstr(auth, "\"mode\":\"later_reject\"")) {
        later(150, reject_later, req);
    } else if (strstr(auth, "\"mode\":\"reject_bad\"")) {
        /* Refusals with bad arguments leave the request to answer. */
        CHECK_ST(iobus_connect_reject(req, "x", "{not json", SIZE_MAX), IOBUS_ERR_INVALID_JSON);
        CHECK_ST(iobus_connect_reject(req, BAD_UTF8, NULL, 0), IOBUS_ERR_INVALID_UTF8);
        CHECK_ST(iobus_connect_reject(req, "x", "\"" BAD_UTF8 "\"", SIZE_MAX), IOBUS_ERR_INVALID_UTF8);
        CHECK_OK(iobus_connect_reject(req, "x", NULL, 5)); /* no data: data_len is not read */
        h_log_add("reject_bad answered");
    } else {
        char copy[32];
        snprintf(copy, sizeof copy, "%s", sid);
        /* A socket waiting for its answer is reachable: what is emitted to it
         * goes out after the CONNECT answer. */
        static int early_checked;
        if (!early_checked++) CHECK_OK(iobus_socket_emit(server, copy, "early", "[]", SIZE_MAX, NULL, 0));
        CHECK_OK(iobus_connect_accept(req));
        /* Calls from inside a callback: the accepted socket is reachable at once. */
        CHECK_OK(iobus_socket_emit(server, copy, "welcome", "[\"hi\"]", SIZE_MAX, NULL, 0));
    }
    leave_cb();
}

static void on_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    enter_cb();
    (void)ud;
    h_log_add("disconnect nsp=%s sid=%s reason=%s rooms=%s", nsp, sid, reason, rooms);
    leave_cb();
}

/* ---- events ---- */

static void log_event(const char *tag, const iobus_event *ev) {
    size_t len = 0;
    const char *args = iobus_event_args(ev, &len);
    CHECK(args && strlen(args) == len);
    char bins[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < iobus_event_binary_count(ev); i++) {
        size_t blen = 0;
        const uint8_t *b = iobus_event_binary(ev, i, &blen);
        CHECK(b != NULL || blen == 0);
        used += (size_t)snprintf(bins + used, sizeof bins - used, "%s%zu:", i ? "," : "", blen);
        for (size_t j = 0; j < blen && used + 3 < sizeof bins; j++) used += (size_t)snprintf(bins + used, sizeof bins - used, "%02x", b[j]);
    }
    if (iobus_event_binary_count(ev) > 0) {
        size_t first_len = 0;
        const uint8_t *first_bytes = iobus_event_binary(ev, 0, &first_len);
        CHECK(iobus_event_binary(ev, 0, NULL) == first_bytes); /* len may be NULL */
    }
    size_t dummy = 99;
    CHECK(iobus_event_binary(ev, iobus_event_binary_count(ev), &dummy) == NULL);
    CHECK(iobus_event_binary(ev, (size_t)-1, NULL) == NULL);
    CHECK(dummy == 99);
    h_log_add("%s nsp=%s sid=%s name=%s args=%s bin=[%s] ack=%d", tag, iobus_event_namespace(ev),
              iobus_event_socket_id(ev), iobus_event_name(ev), args, bins, iobus_event_wants_ack(ev) ? 1 : 0);
}

/* Collects the attachments of an event as an iobus_buf array. */
static size_t event_bufs(const iobus_event *ev, iobus_buf *bufs, size_t max) {
    size_t n = iobus_event_binary_count(ev);
    if (n > max) n = max;
    for (size_t i = 0; i < n; i++) bufs[i].data = iobus_event_binary(ev, i, &bufs[i].len);
    return n;
}

/* `echo`: the same arguments (binary included) back as an event, and as the ack. */
static void on_echo(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    log_event("echo", ev);
    size_t len = 0;
    const char *args = iobus_event_args(ev, &len);
    iobus_buf bufs[16];
    size_t n = event_bufs(ev, bufs, 16);
    CHECK_OK(iobus_socket_emit(server, iobus_event_socket_id(ev), "echo", args, len, bufs, n));
    iobus_ack *ack = iobus_event_take_ack(ev);
    if (ack) CHECK_OK(iobus_ack_send(ack, args, len, bufs, n));
    leave_cb();
}

static void answer_later(void *ack) {
    CHECK_OK(iobus_ack_send(ack, "[\"later\",{\"ok\":true}]", SIZE_MAX, NULL, 0));
    h_log_add("answered later");
}

/* `ask later`: the ack is answered from another thread after the callback. */
static void on_ask_later(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    CHECK(iobus_event_wants_ack(ev));
    iobus_ack *ack = iobus_event_take_ack(ev);
    CHECK(ack != NULL);
    CHECK(iobus_event_take_ack(ev) == NULL); /* taken once */
    if (ack) later(100, answer_later, ack);
    leave_cb();
}

/* `ack bad`: answers with bad arguments first (the handle stays usable). */
static void on_ack_bad(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    CHECK(ack != NULL);
    if (ack) {
        iobus_buf one = {(const uint8_t *)"\x01\x02", 2};
        CHECK_ST(iobus_ack_send(ack, "[1,", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
        CHECK_ST(iobus_ack_send(ack, "{\"a\":1}", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
        CHECK_ST(iobus_ack_send(ack, "[\"" BAD_UTF8 "\"]", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_UTF8);
        CHECK_ST(iobus_ack_send(ack, "[1]", SIZE_MAX, &one, 1), IOBUS_ERR_INVALID_BINARY);
        CHECK_ST(iobus_ack_send(ack, "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, NULL, 1),
                 IOBUS_ERR_NULL_ARGUMENT);
        CHECK_OK(iobus_ack_send(ack, "[\"fixed\",{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, &one, 1));
    }
    leave_cb();
}

/* `ack free`: the handle is released without an answer. */
static void on_ack_free(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    iobus_ack_free(iobus_event_take_ack(ev));
    h_log_add("ack freed");
    leave_cb();
}

/* `ack hold`: kept until the client is gone. */
static iobus_ack *held_ack;
static void on_ack_hold(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    held_ack = iobus_event_take_ack(ev);
    CHECK(held_ack != NULL);
    h_log_add("ack held");
    leave_cb();
}

static void on_any(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    log_event("any", ev);
    leave_cb();
}

/* Ordering: `n` carries 0, 1, 2, … per client. */
static int order_next;
static int order_bad;
static void on_n(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    const char *args = iobus_event_args(ev, NULL);
    int got = args ? atoi(args + 1) : -1;
    if (got != order_next) order_bad++;
    order_next = got + 1;
    /* Linger a little, so that an overlapping callback would be seen. */
    if (got % 50 == 0) h_sleep_ms(2);
    if (got == 199) h_log_add("n done");
    leave_cb();
}

/* ---- emit-with-ack completions ---- */

typedef struct completion {
    const char *name;
    int calls;
    int status;
    char reply[512];
    size_t binary_count;
} completion;

static void on_completion(void *ud, iobus_ack_status status, const iobus_event *reply) {
    enter_cb();
    completion *c = ud;
    c->calls++;
    c->status = (int)status;
    if (status == IOBUS_ACK_OK) {
        CHECK(reply != NULL);
        CHECK(reply && iobus_event_name(reply) == NULL);
        CHECK(reply && iobus_event_take_ack(reply) == NULL);
        CHECK(reply && !iobus_event_wants_ack(reply));
        snprintf(c->reply, sizeof c->reply, "%s", reply ? iobus_event_args(reply, NULL) : "");
        c->binary_count = reply ? iobus_event_binary_count(reply) : 0;
    } else {
        CHECK(reply == NULL);
    }
    h_log_add("completion %s status=%d reply=%s", c->name, (int)status, c->reply);
    leave_cb();
}

/* `emit inside`: calls made from inside a callback. */
static completion inside_completion = {"inside", 0, -1, "", 0};
static void on_emit_inside(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    const char *sid = iobus_event_socket_id(ev);
    char *rooms = NULL;
    CHECK_OK(iobus_socket_join(server, sid, "inside-room"));
    CHECK_OK(iobus_socket_rooms(server, sid, &rooms, NULL));
    CHECK_HAS(rooms, "\"inside-room\"");
    iobus_string_free(rooms);
    const char *to[] = {"inside-room"};
    iobus_selection in_room = {0};
    in_room.rooms = to;
    in_room.room_count = 1;
    CHECK_OK(iobus_selection_emit(server, &in_room, "inside", "[\"room\"]", SIZE_MAX, NULL, 0));
    CHECK_OK(iobus_socket_emit(server, sid, "inside", "[\"direct\"]", SIZE_MAX, NULL, 0));
    CHECK_OK(iobus_socket_emit_with_ack(server, sid, "inside-ask", "[5]", SIZE_MAX, NULL, 0, T(5000), on_completion,
                                        &inside_completion));
    CHECK_OK(iobus_socket_leave(server, sid, "inside-room"));
    leave_cb();
}

/* `stop now`: stops the server from inside a callback. */
static void on_stop_now(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    (void)ev;
    CHECK_OK(iobus_server_stop(server));
    CHECK_OK(iobus_server_stop(server));
    CHECK_ST(iobus_socket_emit(server, iobus_event_socket_id(ev), "x", NULL, 0, NULL, 0), IOBUS_ERR_NOT_RUNNING);
    h_log_add("stopped inside");
    leave_cb();
}

/* ---- helpers ---- */

static int count_sids(const char *json) {
    int n = 0;
    for (const char *p = json; p && *p; p++) n += *p == '"';
    return n / 2;
}

/* How many sockets an iobus_selection_fetch_sockets answer lists. */
static int count_sockets(const char *json) {
    int n = 0;
    for (const char *p = json; p && (p = strstr(p, "{\"id\":\"")); p++) n++;
    return n;
}

/* The selection of the sockets of `nsp` in any of `rooms` (count n). */
static iobus_selection in_rooms(const char *nsp, const char **rooms, size_t n) {
    iobus_selection s = {0};
    s.nsp = nsp;
    s.rooms = rooms;
    s.room_count = n;
    return s;
}

/* Waits until client `c` has an event line holding `needle` after `"event":`. */
static const char *wait_event(peer *p, const char *c, const char *event_and_args) {
    char needle[1024];
    snprintf(needle, sizeof needle, "{\"t\":\"event\",\"c\":\"%s\",\"event\":%s", c, event_and_args);
    return PEER_WAIT(p, needle, 5000);
}

static int event_count(peer *p, const char *c, const char *event_and_args) {
    char needle[1024];
    snprintf(needle, sizeof needle, "{\"t\":\"event\",\"c\":\"%s\",\"event\":%s", c, event_and_args);
    return peer_count(p, needle);
}

/* ---- the sections ---- */

static void test_connections(peer *p, uint16_t port, char *sid_a) {
    char needle[256];
    char sid[32];
    (void)port;
    SECTION("connect: accept with handshake data");
    CHECK(peer_connect(p, "a", "\"auth\":{\"token\":\"t1\"},\"query\":{\"q\":\"v 1\"},\"headers\":{\"x-test\":\"yes\"}",
                       sid_a, 32));
    snprintf(needle, sizeof needle, "connect nsp=/ sid=%s auth={\"token\":\"t1\"}", sid_a);
    int i = LOG_WAIT(needle, 3000);
    char *rec = h_log_get(i);
    CHECK_HAS(rec, "\"x-test\":\"yes\"");
    CHECK_HAS(rec, "\"q\":\"v 1\"");
    CHECK_HAS(rec, "\"address\":\"127.0.0.1\"");
    free(rec);
    wait_event(p, "a", "\"early\",\"args\":[]");
    wait_event(p, "a", "\"welcome\",\"args\":[\"hi\"]");
    char *hs = NULL;
    size_t hs_len = 0;
    CHECK_OK(iobus_socket_handshake(server, sid_a, &hs, &hs_len));
    CHECK(hs && strlen(hs) == hs_len);
    CHECK_HAS(hs, "\"auth\":{\"token\":\"t1\"}");
    CHECK_HAS(hs, "\"query\":{");
    CHECK_HAS(hs, "\"EIO\":\"4\"");
    CHECK_HAS(hs, "\"x-test\":\"yes\"");
    CHECK_HAS(hs, "\"address\":\"127.0.0.1\"");
    CHECK_HAS(hs, "\"port\":");
    CHECK_HAS(hs, "\"url\":\"/socket.io/");
    CHECK_HAS(hs, "\"issued\":");
    iobus_string_free(hs);

    SECTION("connect: refused with a message and data");
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"r1\",\"auth\":{\"mode\":\"reject\"}}");
    PEER_WAIT(p, "{\"t\":\"connect_error\",\"c\":\"r1\",\"message\":\"Not authorized\",\"data\":{\"reason\":\"bad token\",\"code\":42}}",
              5000);
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"r2\",\"auth\":{\"mode\":\"reject_plain\"}}");
    PEER_WAIT(p, "{\"t\":\"connect_error\",\"c\":\"r2\",\"message\":\"Connection refused\"}", 5000);

    SECTION("connect: answered later from another thread");
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"l1\",\"auth\":{\"mode\":\"later_accept\"}}");
    PEER_WAIT(p, "{\"t\":\"connect\",\"c\":\"l1\"", 5000);
    int returned = LOG_WAIT("connect callback returned", 1000);
    int accepted = LOG_WAIT("accepted later", 1000);
    CHECK(returned >= 0 && accepted > returned);
    peer_cmd(p, "{\"op\":\"disconnect\",\"c\":\"l1\"}");
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"l1\",\"reason\":\"io client disconnect\"}", 5000);
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"l2\",\"auth\":{\"mode\":\"later_reject\"}}");
    PEER_WAIT(p, "{\"t\":\"connect_error\",\"c\":\"l2\",\"message\":\"Later, no\",\"data\":[1,2]}", 5000);
    LOG_WAIT("rejected later", 1000);
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"rb\",\"auth\":{\"mode\":\"reject_bad\"}}");
    PEER_WAIT(p, "{\"t\":\"connect_error\",\"c\":\"rb\",\"message\":\"x\"}", 5000);
    LOG_WAIT("reject_bad answered", 1000);

    SECTION("connect: namespaces without a connect handler, unknown namespaces");
    CHECK(peer_connect(p, "adm", "\"nsp\":\"/admin\"", sid, sizeof sid));
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"nowhere\",\"nsp\":\"/nowhere\"}");
    PEER_WAIT(p, "{\"t\":\"connect_error\",\"c\":\"nowhere\",\"message\":\"Invalid namespace\"}", 5000);
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"adm\",\"event\":\"status\",\"args\":[1],\"ack\":true,\"seq\":1}");
    PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"adm\",\"seq\":1,\"args\":[\"admin ok\"]}", 5000);
    peer_cmd(p, "{\"op\":\"disconnect\",\"c\":\"adm\"}");
    snprintf(needle, sizeof needle, "disconnect nsp=/admin sid=%s reason=client namespace disconnect", sid);
    LOG_WAIT(needle, 3000);
}

static void on_admin_status(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    CHECK_STR(iobus_event_namespace(ev), "/admin");
    iobus_ack *ack = iobus_event_take_ack(ev);
    CHECK(ack != NULL);
    if (ack) CHECK_OK(iobus_ack_send(ack, "[\"admin ok\"]", SIZE_MAX, NULL, 0));
    leave_cb();
}

static void test_events(peer *p, const char *sid_a) {
    char needle[512];
    SECTION("events: JSON both ways");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[1,\"two\",{\"three\":3},null,true,[]]}");
    snprintf(needle, sizeof needle, "echo nsp=/ sid=%s name=echo args=[1,\"two\",{\"three\":3},null,true,[]] bin=[] ack=0",
             sid_a);
    LOG_WAIT(needle, 3000);
    wait_event(p, "a", "\"echo\",\"args\":[1,\"two\",{\"three\":3},null,true,[]],\"ack\":false}");

    /* Text that needs escaping and non-ASCII text survive both ways. */
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[\"q\\\"b\\\\n\\nt\\t\",\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89\"]}");
    LOG_WAIT("args=[\"q\\\"b\\\\n\\nt\\t\",\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89\"]", 3000);
    wait_event(p, "a", "\"echo\",\"args\":[\"q\\\"b\\\\n\\nt\\t\",\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89\"]");

    /* An event without arguments. */
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[]}");
    LOG_WAIT("name=echo args=[] bin=[] ack=0", 3000);
    wait_event(p, "a", "\"echo\",\"args\":[],\"ack\":false}");

    SECTION("events: binary both ways");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[{\"$bin\":\"AAECAw==\"},\"x\",{\"nested\":{\"$bin\":\"/w==\"}},{\"$bin\":\"\"}]}");
    snprintf(needle, sizeof needle,
             "echo nsp=/ sid=%s name=echo args=[{\"_placeholder\":true,\"num\":0},\"x\",{\"nested\":{\"_placeholder\":true,"
             "\"num\":1}},{\"_placeholder\":true,\"num\":2}] bin=[4:00010203,1:ff,0:] ack=0",
             sid_a);
    LOG_WAIT(needle, 3000);
    wait_event(p, "a", "\"echo\",\"args\":[{\"$bin\":\"AAECAw==\"},\"x\",{\"nested\":{\"$bin\":\"/w==\"}},{\"$bin\":\"\"}]");

    /* Server to client: length-delimited JSON, binary, volatile, no arguments. */
    const char *json = "[\"cut\",{\"n\":1}]garbage after the array";
    CHECK_OK(iobus_socket_emit(server, sid_a, "pushed", json, strlen("[\"cut\",{\"n\":1}]"), NULL, 0));
    wait_event(p, "a", "\"pushed\",\"args\":[\"cut\",{\"n\":1}]");
    uint8_t big[3000];
    for (size_t k = 0; k < sizeof big; k++) big[k] = (uint8_t)(k * 7);
    iobus_buf bufs[2] = {{(const uint8_t *)"\x00\xff\x10", 3}, {big, sizeof big}};
    CHECK_OK(iobus_socket_emit(server, sid_a, "bin",
                               "[{\"_placeholder\":true,\"num\":1},\"mid\",{\"_placeholder\":true,\"num\":0}]", SIZE_MAX,
                               bufs, 2));
    const char *l = wait_event(p, "a", "\"bin\",\"args\":[{\"$bin\":\"");
    CHECK(l && strstr(l, "\"mid\",{\"$bin\":\"AP8Q\"}]"));
    CHECK(l && strlen(l) > 4000); /* 3000 bytes as base64 */
    CHECK_OK(iobus_socket_emit(server, sid_a, "nothing", NULL, 0, NULL, 0));
    wait_event(p, "a", "\"nothing\",\"args\":[],\"ack\":false}");
    CHECK_OK(iobus_socket_emit(server, sid_a, "nothing", NULL, SIZE_MAX, NULL, 0));
    wait_event(p, "a", "\"nothing\",\"args\":[],\"ack\":false}");
    CHECK_OK(iobus_socket_emit_volatile(server, sid_a, "vol", "[\"v\"]", SIZE_MAX, NULL, 0));
    wait_event(p, "a", "\"vol\",\"args\":[\"v\"]");
    CHECK_OK(iobus_socket_emit_volatile(server, sid_a, "volbin", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, bufs,
                                        1));
    wait_event(p, "a", "\"volbin\",\"args\":[{\"$bin\":\"AP8Q\"}]");

    SECTION("events: bad emits to a live socket");
    CHECK_ST(iobus_socket_emit(server, sid_a, NULL, "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit(server, sid_a, BAD_UTF8, "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_socket_emit(server, sid_a, "e", "[1,]", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_socket_emit(server, sid_a, "e", "\"text\"", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_socket_emit(server, sid_a, "e", "[\"" BAD_UTF8 "\"]", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_socket_emit(server, sid_a, "e", "[1]", SIZE_MAX, bufs, 1), IOBUS_ERR_INVALID_BINARY);
    CHECK_ST(iobus_socket_emit(server, sid_a, "e", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, NULL, 1),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit(server, sid_a, "e", NULL, 4, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit_volatile(server, sid_a, "e", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, NULL, 1),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit(server, sid_a, "e", "[{\"_placeholder\":true,\"num\":3}]", SIZE_MAX, bufs, 1),
             IOBUS_ERR_INVALID_BINARY);
    CHECK_ST(iobus_socket_emit(server, sid_a, "disconnect", "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_RESERVED_EVENT);
    CHECK_ST(iobus_socket_emit_volatile(server, sid_a, "connect", "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_RESERVED_EVENT);
    CHECK_ST(iobus_socket_emit_volatile(server, sid_a, NULL, "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit_volatile(server, sid_a, "e", "{}", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    completion never = {"never", 0, -1, "", 0};
    CHECK_ST(iobus_socket_emit_with_ack(server, sid_a, "newListener", "[]", SIZE_MAX, NULL, 0, 100, on_completion,
                                        &never),
             IOBUS_ERR_RESERVED_EVENT);
    CHECK_ST(iobus_socket_emit_with_ack(server, sid_a, NULL, "[]", SIZE_MAX, NULL, 0, 100, on_completion, &never),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_emit_with_ack(server, sid_a, "e", "[", SIZE_MAX, NULL, 0, 100, on_completion, &never),
             IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_socket_emit_with_ack(server, sid_a, "e", "[]", SIZE_MAX, bufs, 2, 100, on_completion, &never),
             IOBUS_ERR_INVALID_BINARY);
    CHECK_ST(iobus_socket_join(server, sid_a, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_join(server, sid_a, BAD_UTF8), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_socket_leave(server, sid_a, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_rooms(server, sid_a, NULL, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_handshake(server, sid_a, NULL, NULL), IOBUS_ERR_NULL_ARGUMENT);

    SECTION("events: catch-all, and removing a handler");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"whatever\",\"args\":[7]}");
    LOG_WAIT("any nsp=/ sid=", 3000);
    CHECK(h_log_count("name=whatever args=[7]") == 1);
    CHECK_OK(iobus_server_on_event(server, NULL, "echo", NULL, NULL));
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[\"to any\"]}");
    LOG_WAIT("any nsp=/ sid=", 3000);
    CHECK(h_log_count("name=echo args=[\"to any\"]") == 1);
    CHECK_OK(iobus_server_on_event(server, NULL, "echo", on_echo, NULL));
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[\"back\"]}");
    LOG_WAIT("echo nsp=/", 3000);
    wait_event(p, "a", "\"echo\",\"args\":[\"back\"]");
    CHECK(h_log_count("any nsp=/ sid=") == 2);
}

static void test_acks(peer *p, const char *sid_a) {
    SECTION("acks: client asks, server answers now");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[{\"x\":[1,2]},{\"$bin\":\"AQI=\"}],\"ack\":true,\"seq\":10}");
    LOG_WAIT("name=echo args=[{\"x\":[1,2]},{\"_placeholder\":true,\"num\":0}] bin=[2:0102] ack=1", 3000);
    PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"a\",\"seq\":10,\"args\":[{\"x\":[1,2]},{\"$bin\":\"AQI=\"}]}", 5000);

    SECTION("acks: answered later from another thread");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"ask later\",\"args\":[1],\"ack\":true,\"seq\":11}");
    PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"a\",\"seq\":11,\"args\":[\"later\",{\"ok\":true}]}", 5000);
    LOG_WAIT("answered later", 1000);

    SECTION("acks: bad answers first, then a binary one");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"ack bad\",\"args\":[],\"ack\":true,\"seq\":12}");
    PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"a\",\"seq\":12,\"args\":[\"fixed\",{\"$bin\":\"AQI=\"}]}", 5000);

    SECTION("acks: released unanswered");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"ack free\",\"args\":[],\"ack\":true,\"seq\":13,\"timeout\":%d}",
             T(400));
    LOG_WAIT("ack freed", 3000);
    PEER_WAIT(p, "{\"t\":\"ack_error\",\"c\":\"a\",\"seq\":13", 5000);

    SECTION("emit-with-ack: reply, binary reply, timeout, disconnect — each exactly once");
    static completion reply = {"reply", 0, -1, "", 0};
    static completion bin_reply = {"bin reply", 0, -1, "", 0};
    static completion timeout = {"timeout", 0, -1, "", 0};
    static completion gone = {"gone", 0, -1, "", 0};
    static completion late = {"late", 0, -1, "", 0};
    CHECK_OK(iobus_socket_emit_with_ack(server, sid_a, "ask", "[\"q\",2]", SIZE_MAX, NULL, 0, T(5000), on_completion,
                                        &reply));
    LOG_WAIT("completion reply status=0 reply=[\"q\",2]", 5000);
    wait_event(p, "a", "\"ask\",\"args\":[\"q\",2],\"ack\":true}");

    peer_reply(p, "a", "ask bin", "\"mode\":\"args\",\"args\":[\"b\",{\"$bin\":\"CQk=\"}]");
    iobus_buf one = {(const uint8_t *)"\x07", 1};
    CHECK_OK(iobus_socket_emit_with_ack(server, sid_a, "ask bin", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, &one,
                                        1, T(5000), on_completion, &bin_reply));
    LOG_WAIT("completion bin reply status=0 reply=[\"b\",{\"_placeholder\":true,\"num\":0}]", 5000);
    CHECK(bin_reply.binary_count == 1);
    wait_event(p, "a", "\"ask bin\",\"args\":[{\"$bin\":\"Bw==\"}],\"ack\":true}");

    peer_reply(p, "a", "ask ignore", "\"mode\":\"ignore\"");
    CHECK_OK(iobus_socket_emit_with_ack(server, sid_a, "ask ignore", "[]", SIZE_MAX, NULL, 0, 300, on_completion,
                                        &timeout));
    LOG_WAIT("completion timeout status=1", 5000);

    /* A second client whose answer comes too late, and who leaves first. */
    char sid_s[32];
    CHECK(peer_connect(p, "s", "", sid_s, sizeof sid_s));
    char rule[64];
    snprintf(rule, sizeof rule, "\"mode\":\"echo\",\"delay\":%d", T(3000));
    peer_reply(p, "s", "ask slow", rule);
    CHECK_OK(iobus_socket_emit_with_ack(server, sid_s, "ask slow", "[1]", SIZE_MAX, NULL, 0, T(10000), on_completion,
                                        &gone));
    wait_event(p, "s", "\"ask slow\"");
    snprintf(rule, sizeof rule, "\"mode\":\"echo\",\"delay\":%d", T(600));
    peer_reply(p, "a", "ask late", rule);
    CHECK_OK(iobus_socket_emit_with_ack(server, sid_a, "ask late", "[1]", SIZE_MAX, NULL, 0, T(200), on_completion,
                                        &late));
    CHECK_OK(iobus_socket_disconnect(server, sid_s, false));
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"s\",\"reason\":\"io server disconnect\"}", 5000);
    LOG_WAIT("completion gone status=2", 5000);
    LOG_WAIT("completion late status=1", 5000);
    /* The late answer arrives and is ignored; nothing is called twice. */
    h_settle(900);
    CHECK(reply.calls == 1 && bin_reply.calls == 1 && timeout.calls == 1 && gone.calls == 1 && late.calls == 1);
    CHECK(timeout.status == IOBUS_ACK_TIMEOUT && gone.status == IOBUS_ACK_DISCONNECTED);

    SECTION("acks: answering a client that left");
    char sid_h[32];
    CHECK(peer_connect(p, "h", "", sid_h, sizeof sid_h));
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"h\",\"event\":\"ack hold\",\"args\":[],\"ack\":true,\"seq\":1,\"timeout\":%d}",
             T(5000));
    LOG_WAIT("ack held", 3000);
    peer_cmd(p, "{\"op\":\"close\",\"c\":\"h\"}");
    char needle[256];
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s reason=transport close", sid_h);
    LOG_WAIT(needle, 3000);
    /* The handle is consumed by this answer even though it fails (see the report on iobus_ack_send). */
    CHECK_ST(iobus_ack_send(held_ack, "[]", SIZE_MAX, NULL, 0), IOBUS_ERR_DISCONNECTED);
    held_ack = NULL;
}

static void test_rooms(peer *p, const char *sid_a) {
    char sid_b[32], sid_c[32];
    char *json = NULL;
    size_t len = 0;
    SECTION("rooms: join, leave, socket rooms, namespace rooms, fetch");
    CHECK(peer_connect(p, "b", "", sid_b, sizeof sid_b));
    CHECK(peer_connect(p, "c", "", sid_c, sizeof sid_c));
    CHECK_OK(iobus_socket_join(server, sid_a, "red"));
    CHECK_OK(iobus_socket_join(server, sid_a, "red")); /* twice is once */
    CHECK_OK(iobus_socket_join(server, sid_b, "red"));
    CHECK_OK(iobus_socket_join(server, sid_c, "blue"));
    CHECK_OK(iobus_socket_join(server, sid_a, "blue"));
    CHECK_OK(iobus_socket_join(server, sid_a, "\xc3\xa9t\xc3\xa9"));
    CHECK_OK(iobus_socket_leave(server, sid_a, "\xc3\xa9t\xc3\xa9"));
    CHECK_OK(iobus_socket_leave(server, sid_a, "never joined"));

    CHECK_OK(iobus_socket_rooms(server, sid_a, &json, &len));
    CHECK(json && strlen(json) == len);
    CHECK_HAS(json, "\"blue\"");
    CHECK_HAS(json, "\"red\"");
    CHECK_HAS(json, sid_a);
    CHECK(count_sids(json) == 3);
    CHECK(json && strstr(json, "\"blue\"") < strstr(json, "\"red\"")); /* sorted */
    iobus_string_free(json);

    static h_answer rooms = {"rooms", 0, ""};
    ALL_ROOMS(server, "/", &rooms);
    CHECK_HAS(rooms.json, "\"red\"");
    CHECK_HAS(rooms.json, "\"blue\"");
    CHECK(strstr(rooms.json, "t\xc3\xa9") == NULL);

    const char *red[] = {"red"};
    const char *blue[] = {"blue"};
    const char *red_blue[] = {"red", "blue"};
    iobus_selection sel = in_rooms("/", red, 1);
    static h_answer in_red = {"in red", 0, ""};
    FETCH_SOCKETS(server, &sel, &in_red);
    CHECK(count_sockets(in_red.json) == 2);
    CHECK_HAS(in_red.json, sid_a);
    CHECK_HAS(in_red.json, sid_b);
    sel = in_rooms(NULL, red_blue, 2);
    static h_answer in_red_blue = {"in red or blue", 0, ""};
    CHECK(count_sockets(FETCH_SOCKETS(server, &sel, &in_red_blue)) == 3);
    /* The same, synchronously, from this server alone: sorted ids. */
    char *ids = NULL;
    CHECK_OK(iobus_namespace_fetch_sockets(server, NULL, red_blue, 2, &ids, NULL));
    CHECK(ids && count_sids(ids) == 3);
    if (ids) {
        CHECK_HAS(ids, sid_a);
        CHECK_HAS(ids, sid_b);
    }
    iobus_string_free(ids);
    sel = in_rooms(NULL, NULL, 0);
    static h_answer in_all = {"in the namespace", 0, ""};
    CHECK(count_sockets(FETCH_SOCKETS(server, &sel, &in_all)) == 3);

    SECTION("selection emit: rooms, except rooms, except sid, volatile");
    /* Each emit is followed by a barrier to all, so that what did not arrive can be counted. */
    iobus_selection all = {0};
    sel = in_rooms("/", red, 1);
    CHECK_OK(iobus_selection_emit(server, &sel, "n1", "[\"red\"]", SIZE_MAX, NULL, 0));
    sel = in_rooms("/", red_blue, 2);
    CHECK_OK(iobus_selection_emit(server, &sel, "n2", "[\"red or blue\"]", SIZE_MAX, NULL, 0));
    sel = in_rooms("/", NULL, 0);
    sel.except_rooms = blue;
    sel.except_room_count = 1;
    CHECK_OK(iobus_selection_emit(server, &sel, "n3", "[\"not blue\"]", SIZE_MAX, NULL, 0));
    const char *not_a[] = {sid_a};
    const char *not_b[] = {sid_b};
    sel = in_rooms("/", red, 1);
    sel.except_sids = not_a;
    sel.except_sid_count = 1;
    CHECK_OK(iobus_selection_emit(server, &sel, "n4", "[\"red but a\"]", SIZE_MAX, NULL, 0));
    iobus_buf b = {(const uint8_t *)"bin", 3};
    sel = in_rooms(NULL, blue, 1);
    sel.except_rooms = red;
    sel.except_room_count = 1;
    CHECK_OK(iobus_selection_emit(server, &sel, "n6", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, &b, 1));
    CHECK_OK(iobus_selection_emit(server, &all, "barrier", NULL, 0, NULL, 0));
    wait_event(p, "a", "\"barrier\"");
    wait_event(p, "b", "\"barrier\"");
    wait_event(p, "c", "\"barrier\"");
    CHECK(event_count(p, "a", "\"n1\"") == 1 && event_count(p, "b", "\"n1\"") == 1 && event_count(p, "c", "\"n1\"") == 0);
    CHECK(event_count(p, "a", "\"n2\"") == 1 && event_count(p, "b", "\"n2\"") == 1 && event_count(p, "c", "\"n2\"") == 1);
    CHECK(event_count(p, "a", "\"n3\"") == 0 && event_count(p, "b", "\"n3\"") == 1 && event_count(p, "c", "\"n3\"") == 0);
    CHECK(event_count(p, "a", "\"n4\"") == 0 && event_count(p, "b", "\"n4\"") == 1 && event_count(p, "c", "\"n4\"") == 0);
    /* Volatile packets are dropped while a connection still has packets queued:
     * sent once the barrier shows the queues are drained. */
    sel = in_rooms(NULL, NULL, 0);
    sel.except_sids = not_b;
    sel.except_sid_count = 1;
    sel.flags = IOBUS_SELECTION_VOLATILE;
    CHECK_OK(iobus_selection_emit(server, &sel, "n5", "[\"volatile\"]", SIZE_MAX, NULL, 0));
    CHECK_OK(iobus_selection_emit(server, &all, "barrier2", NULL, 0, NULL, 0));
    wait_event(p, "a", "\"barrier2\"");
    wait_event(p, "b", "\"barrier2\"");
    wait_event(p, "c", "\"barrier2\"");
        /* A volatile packet may still be dropped (a polling client between two
     * requests cannot take it); it never arrives twice, and never to the
     * excluded socket. */
    CHECK(event_count(p, "a", "\"n5\"") <= 1);
    CHECK(event_count(p, "b", "\"n5\"") == 0);
    CHECK(event_count(p, "c", "\"n5\"") <= 1);
    CHECK(event_count(p, "a", "\"n6\"") == 0 && event_count(p, "b", "\"n6\"") == 0 && event_count(p, "c", "\"n6\"") == 1);
    CHECK(event_count(p, "c", "\"n6\",\"args\":[{\"$bin\":\"Ymlu\"}]") == 1);

    SECTION("selection: join / leave / disconnect");
    const char *green[] = {"green"};
    const char *everyone[] = {"everyone"};
    sel = in_rooms("/", red, 1);
    CHECK_OK(iobus_selection_join(server, &sel, green, 1));
    sel = in_rooms("/", green, 1);
    static h_answer in_green = {"in green", 0, ""};
    CHECK(count_sockets(FETCH_SOCKETS(server, &sel, &in_green)) == 2);
    CHECK(strstr(in_green.json, sid_c) == NULL);
    sel = in_rooms("/", NULL, 0);
    CHECK_OK(iobus_selection_join(server, &sel, everyone, 1));
    sel = in_rooms("/", everyone, 1);
    static h_answer in_everyone = {"in everyone", 0, ""};
    CHECK(count_sockets(FETCH_SOCKETS(server, &sel, &in_everyone)) == 3);
    sel = in_rooms("/", blue, 1);
    CHECK_OK(iobus_selection_leave(server, &sel, everyone, 1));
    sel = in_rooms("/", everyone, 1);
    static h_answer in_everyone_left = {"in everyone, blue left", 0, ""};
    CHECK(count_sockets(FETCH_SOCKETS(server, &sel, &in_everyone_left)) == 1);
    CHECK_HAS(in_everyone_left.json, sid_b);
    sel = in_rooms("/", NULL, 0);
    CHECK_OK(iobus_selection_leave(server, &sel, green, 1));
    static h_answer rooms_left = {"rooms, green left", 0, ""};
    CHECK(strstr(ALL_ROOMS(server, NULL, &rooms_left), "\"green\"") == NULL);
    CHECK_HAS(rooms_left.json, "\"everyone\"");
    CHECK_OK(iobus_socket_leave(server, sid_b, "red"));
    sel = in_rooms("/", red, 1);
    static h_answer in_red_b_left = {"in red, b left", 0, ""};
    CHECK(count_sockets(FETCH_SOCKETS(server, &sel, &in_red_b_left)) == 1);
    CHECK_HAS(in_red_b_left.json, sid_a);

    /* c (in blue) is disconnected through its room; it was in these rooms. */
    sel = in_rooms("/", blue, 1);
    CHECK_OK(iobus_selection_disconnect(server, &sel, false));
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"c\",\"reason\":\"io server disconnect\"}", 5000);
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"a\",\"reason\":\"io server disconnect\"}", 5000);
    char needle[256];
    /* KNOWN GAP (reported, src/server/socket.rs `Socket::disconnect`): the
     * DISCONNECT packet is queued before the socket is marked gone, so a
     * client that closes its connection at once can win the race and the
     * reason becomes "transport close". Only the socket is matched here. */
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s reason=", sid_c);
    int i = LOG_WAIT(needle, 3000);
    char *rec = h_log_get(i);
    CHECK_HAS(rec, "\"blue\"");
    CHECK_HAS(rec, sid_c);
    CHECK(rec && (strstr(rec, "reason=server namespace disconnect rooms=") || strstr(rec, "reason=transport close rooms=")));
    KNOWN_GAP(rec && strstr(rec, "reason=server namespace disconnect"), "a namespace disconnect reported as transport close");
    free(rec);
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s reason=", sid_a);
    rec = h_log_get(LOG_WAIT(needle, 3000));
    CHECK(rec && (strstr(rec, "reason=server namespace disconnect") || strstr(rec, "reason=transport close")));
    KNOWN_GAP(rec && strstr(rec, "reason=server namespace disconnect"), "a namespace disconnect reported as transport close");
    free(rec);
    CHECK_ST(iobus_socket_emit(server, sid_a, "x", NULL, 0, NULL, 0), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_rooms(server, sid_c, &json, NULL), IOBUS_ERR_UNKNOWN_SOCKET);

    /* b: its whole connection closed. */
    CHECK_OK(iobus_socket_disconnect(server, sid_b, true));
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"b\"", 5000);
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s reason=", sid_b);
    LOG_WAIT(needle, 3000);
    sel = in_rooms("/", NULL, 0);
    static h_answer none_left = {"nobody left", 0, ""};
    CHECK_STR(FETCH_SOCKETS(server, &sel, &none_left), "[]");
}

static void test_patterns(peer *p) {
    char sid[32];
    char needle[256];
    SECTION("namespace patterns");
    CHECK(peer_connect(p, "dyn", "\"nsp\":\"/room-42\",\"auth\":{\"token\":\"d\"}", sid, sizeof sid));
    snprintf(needle, sizeof needle, "dyn-connect nsp=/room-42 sid=%s", sid);
    LOG_WAIT(needle, 3000);
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"dyn\",\"event\":\"hi\",\"args\":[\"there\"]}");
    snprintf(needle, sizeof needle, "dyn-event nsp=/room-42 sid=%s name=hi args=[\"there\"]", sid);
    LOG_WAIT(needle, 3000);
    iobus_selection dyn = in_rooms("/room-42", NULL, 0);
    CHECK_OK(iobus_selection_emit(server, &dyn, "to-dyn", "[42]", SIZE_MAX, NULL, 0));
    wait_event(p, "dyn", "\"to-dyn\",\"args\":[42]");
    static h_answer in_dyn = {"in /room-42", 0, ""};
    CHECK_HAS(FETCH_SOCKETS(server, &dyn, &in_dyn), sid);
    iobus_selection root = in_rooms("/", NULL, 0);
    static h_answer in_root = {"in / (no dyn)", 0, ""};
    CHECK(strstr(FETCH_SOCKETS(server, &root, &in_root), sid) == NULL);
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"nodyn\",\"nsp\":\"/roo-1\"}");
    PEER_WAIT(p, "{\"t\":\"connect_error\",\"c\":\"nodyn\",\"message\":\"Invalid namespace\"}", 5000);
    peer_cmd(p, "{\"op\":\"disconnect\",\"c\":\"dyn\"}");
    snprintf(needle, sizeof needle, "dyn-disconnect nsp=/room-42 sid=%s reason=client namespace disconnect", sid);
    LOG_WAIT(needle, 3000);

    SECTION("queries about a namespace nobody registered do not open it");
    static h_answer ghost_rooms = {"rooms of /ghost", 0, ""};
    CHECK_STR(ALL_ROOMS(server, "/ghost", &ghost_rooms), "[]");
    iobus_selection ghost = in_rooms("/ghost", NULL, 0);
    CHECK_OK(iobus_selection_emit(server, &ghost, "boo", NULL, 0, NULL, 0));
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"ghost\",\"nsp\":\"/ghost\"}");
    const char *l = PEER_WAIT(p, "\"c\":\"ghost\"", 5000);
    /* Queries do not create the namespace: a client still cannot join it. */
    CHECK(l && strstr(l, "\"message\":\"Invalid namespace\""));
    peer_cmd(p, "{\"op\":\"disconnect\",\"c\":\"ghost\"}");
}

static void on_dyn_connect(void *ud, iobus_connect *req) {
    enter_cb();
    (void)ud;
    h_log_add("dyn-connect nsp=%s sid=%s", iobus_connect_namespace(req), iobus_connect_socket_id(req));
    CHECK_OK(iobus_connect_accept(req));
    leave_cb();
}

static void on_dyn_event(void *ud, const iobus_event *ev) {
    enter_cb();
    (void)ud;
    log_event("dyn-event", ev);
    leave_cb();
}

static void on_dyn_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    enter_cb();
    (void)ud;
    (void)rooms;
    h_log_add("dyn-disconnect nsp=%s sid=%s reason=%s", nsp, sid, reason);
    leave_cb();
}

static void test_inside_and_order(peer *p) {
    char sid[32];
    SECTION("calls from inside callbacks");
    CHECK(peer_connect(p, "in", "", sid, sizeof sid));
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"in\",\"event\":\"emit inside\",\"args\":[]}");
    wait_event(p, "in", "\"inside\",\"args\":[\"room\"]");
    wait_event(p, "in", "\"inside\",\"args\":[\"direct\"]");
    wait_event(p, "in", "\"inside-ask\",\"args\":[5],\"ack\":true}");
    LOG_WAIT("completion inside status=0 reply=[5]", 5000);
    CHECK(inside_completion.calls == 1);

    SECTION("order and one callback at a time");
    char sid2[32];
    CHECK(peer_connect(p, "o", "", sid2, sizeof sid2));
    order_next = 0;
    peer_cmd(p, "{\"op\":\"burst\",\"c\":\"o\",\"event\":\"n\",\"count\":200}");
    /* Meanwhile another client keeps the dispatcher busy too. */
    for (int k = 0; k < 20; k++) peer_cmd(p, "{\"op\":\"emit\",\"c\":\"in\",\"event\":\"whatever\",\"args\":[%d]}", k);
    LOG_WAIT("n done", 10000);
    CHECK(order_bad == 0);
    h_settle(200);
    pthread_mutex_lock(&cb_lock);
    CHECK(cb_overlaps == 0);
    CHECK(cb_other_threads == 0);
    CHECK(cb_thread_known && !pthread_equal(cb_thread, main_thread));
    CHECK(cb_calls > 250);
    pthread_mutex_unlock(&cb_lock);
}

static void test_stop_inside(peer *p, uint16_t port) {
    char sid[32];
    char needle[256];
    static completion pending = {"pending at stop", 0, -1, "", 0};
    SECTION("stop from inside a callback; what still runs after; restart");
    CHECK(peer_connect(p, "st", "", sid, sizeof sid));
    peer_reply(p, "st", "never answered", "\"mode\":\"ignore\"");
    CHECK_OK(iobus_socket_emit_with_ack(server, sid, "never answered", NULL, 0, NULL, 0, T(20000), on_completion,
                                        &pending));
    wait_event(p, "st", "\"never answered\"");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"st\",\"event\":\"stop now\",\"args\":[]}");
    LOG_WAIT("stopped inside", 5000);
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"st\"", 5000);
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s reason=server shutting down", sid);
    LOG_WAIT(needle, 3000);
    LOG_WAIT("completion pending at stop status=2", 3000);
    CHECK(pending.calls == 1);
    uint16_t none = 1;
    CHECK_ST(iobus_server_port(server, &none), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_socket_emit(server, sid, "x", NULL, 0, NULL, 0), IOBUS_ERR_NOT_RUNNING);

    /* The same server starts again on the same port and serves new clients. */
    CHECK_OK(iobus_server_start(server, "127.0.0.1", port));
    char sid2[32];
    CHECK(peer_connect(p, "st2", "", sid2, sizeof sid2));
    wait_event(p, "st2", "\"welcome\"");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"st2\",\"event\":\"echo\",\"args\":[\"again\"],\"ack\":true,\"seq\":1}");
    PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"st2\",\"seq\":1,\"args\":[\"again\"]}", 5000);
}

int main(void) {
    h_init(240);
    main_thread = pthread_self();
    iobus_config *cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_ping_interval(cfg, 2000));
    CHECK_OK(iobus_config_set_ping_timeout(cfg, 5000));
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);

    CHECK_OK(iobus_server_on_connect(server, NULL, on_connect, &server));
    CHECK_OK(iobus_server_on_disconnect(server, "/", on_disconnect, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "echo", on_echo, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "ask later", on_ask_later, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "ack bad", on_ack_bad, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "ack free", on_ack_free, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "ack hold", on_ack_hold, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "emit inside", on_emit_inside, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "stop now", on_stop_now, NULL));
    CHECK_OK(iobus_server_on_event(server, NULL, "n", on_n, NULL));
    CHECK_OK(iobus_server_on_any(server, NULL, on_any, NULL));
    CHECK_OK(iobus_server_on_event(server, "/admin", "status", on_admin_status, NULL));
    CHECK_OK(iobus_server_on_disconnect(server, "/admin", on_disconnect, NULL));
    CHECK_OK(iobus_server_add_namespace_pattern(server, "/room-*"));
    CHECK_OK(iobus_server_add_namespace_pattern(server, "/room-*")); /* twice is once */
    CHECK_OK(iobus_server_on_connect(server, "/room-*", on_dyn_connect, NULL));
    CHECK_OK(iobus_server_on_event(server, "/room-*", "hi", on_dyn_event, NULL));
    CHECK_OK(iobus_server_on_disconnect(server, "/room-*", on_dyn_disconnect, NULL));

    CHECK_OK(iobus_server_start(server, "127.0.0.1", 0));
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(server, &port));
    peer *p = peer_start(port);
    CHECK(p != NULL);
    if (p) {
        char sid_a[32] = "";
        test_connections(p, port, sid_a);
        test_events(p, sid_a);
        test_acks(p, sid_a);
        test_rooms(p, sid_a);
        test_patterns(p);
        test_inside_and_order(p);
        test_stop_inside(p, port);
        peer_stop(p);
    }
    join_later();
    iobus_server_free(server);
    h_log_clear();
    return h_finish("test_events");
}
