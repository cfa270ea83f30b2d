/*
 * A records-mode host (IOBUS_DISPATCH_POLL + iobus_server_poll_records)
 * against real socket.io-client peers, without a single C callback for
 * what it only takes as records: subscriptions to connects, named events,
 * every other event, disconnects; completions asked for with a NULL
 * callback (emit-with-ack to one socket, emit with acks to many — binary
 * replies and a timeout —, fetch sockets, all rooms, server-side emit with
 * ack). Each record kind is decoded as iobus.h describes it. Then
 * unsubscribing both ways (a subscription, and a callback registration,
 * whose calls are records too in this mode), what iobus_server_poll does
 * with a subscription's record, bad arguments, and a free with records
 * still pending.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "iobus.h"

#define BAD_UTF8 "\xff\xfe"

static iobus_server *server;

/* ---- records, decoded into copies ---- */

#define MAX_ITEMS 8
#define MAX_RECS 1024

typedef struct rec {
    int kind, status;
    uint64_t user, handle;
    int n_fields;
    char *fields[MAX_ITEMS]; /* NUL-terminated copies */
    size_t field_len[MAX_ITEMS];
    int n_bins;
    char *bins[MAX_ITEMS];
    size_t bin_len[MAX_ITEMS];
    int used;
} rec;

static rec recs[MAX_RECS];
static int n_recs;
static int malformed;

static uint32_t u32_at(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t u64_at(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The fields of each kind, and whether attachments follow (iobus.h, above
 * iobus_server_poll_records). */
static int kind_fields(int kind, int *attachments) {
    *attachments = 0;
    switch (kind) {
    case IOBUS_RECORD_CONNECT: return 3;
    case IOBUS_RECORD_EVENT: *attachments = 1; return 4;
    case IOBUS_RECORD_DISCONNECT: return 4;
    case IOBUS_RECORD_ACK: *attachments = 1; return 3;
    case IOBUS_RECORD_BROADCAST_ACK: *attachments = 1; return 1;
    case IOBUS_RECORD_SOCKETS: return 1;
    case IOBUS_RECORD_ROOMS: return 1;
    case IOBUS_RECORD_SERVER_SIDE_EMIT: *attachments = 1; return 4;
    default: return -1;
    }
}

/* One item: a u32 length and its bytes, copied (NUL added). */
static int take_item(const uint8_t **p, const uint8_t *end, char **out, size_t *len) {
    if (end - *p < 4) return 0;
    uint32_t n = u32_at(*p);
    if ((size_t)(end - *p - 4) < n) return 0;
    *out = malloc((size_t)n + 1);
    if (!*out) abort();
    memcpy(*out, *p + 4, n);
    (*out)[n] = '\0';
    *len = n;
    *p += 4 + n;
    return 1;
}

static void decode(const uint8_t *buf, size_t len) {
    const uint8_t *p = buf, *stop = buf + len;
    while (p < stop) {
        if (stop - p < 24 || u32_at(p) < 24 || u32_at(p) > (size_t)(stop - p) || n_recs == MAX_RECS) {
            malformed++;
            return;
        }
        rec *r = &recs[n_recs++];
        memset(r, 0, sizeof *r);
        const uint8_t *end = p + u32_at(p);
        r->kind = p[4];
        r->status = p[5];
        CHECK(p[6] == 0 && p[7] == 0);
        r->user = u64_at(p + 8);
        r->handle = u64_at(p + 16);
        const uint8_t *at = p + 24;
        int attachments = 0;
        int n = kind_fields(r->kind, &attachments);
        CHECK(n > 0);
        for (int i = 0; i < n && i < MAX_ITEMS; i++) {
            if (!take_item(&at, end, &r->fields[i], &r->field_len[i])) malformed++;
            else r->n_fields++;
        }
        if (attachments) {
            uint32_t count = end - at >= 4 ? u32_at(at) : UINT32_MAX;
            at += 4;
            for (uint32_t i = 0; i < count && i < MAX_ITEMS; i++) {
                if (!take_item(&at, end, &r->bins[i], &r->bin_len[i])) malformed++;
                else r->n_bins++;
            }
        }
        if (at != end) malformed++; /* the items fill the record exactly */
        p = end;
    }
}

static uint8_t buf[1 << 16];

/* Takes whatever is pending. */
static void take_records(void) {
    size_t len = 0, count = 0;
    CHECK_OK(iobus_server_poll_records(server, buf, sizeof buf, &len, &count));
    if (count) decode(buf, len);
}

/* The first unused record of `kind` with user data `user`, waiting for it
 * (reading the peer meanwhile); NULL after the timeout (a failure). */
static rec *wait_rec(peer *p, int kind, uint64_t user, int ms, int line) {
    int64_t deadline = h_now_ms() + T(ms);
    for (;;) {
        take_records();
        for (int i = 0; i < n_recs; i++) {
            if (!recs[i].used && recs[i].kind == kind && recs[i].user == user) {
                recs[i].used = 1;
                return &recs[i];
            }
        }
        if (h_now_ms() > deadline) break;
        peer_read_available(p, 10);
    }
    h_check(0, "an awaited record", __FILE__, line);
    fprintf(stderr, "  (no record of kind %d, user %llu; unused records:)\n", kind, (unsigned long long)user);
    for (int i = 0; i < n_recs; i++) {
        if (!recs[i].used) fprintf(stderr, "   kind %d user %llu\n", recs[i].kind, (unsigned long long)recs[i].user);
    }
    return NULL;
}
#define WAIT_REC(p, kind, user) wait_rec((p), (kind), (user), 5000, __LINE__)

/* How many unused records of `kind` with user data `user` there are now. */
static int count_recs(int kind, uint64_t user) {
    take_records();
    int n = 0;
    for (int i = 0; i < n_recs; i++) n += !recs[i].used && recs[i].kind == kind && recs[i].user == user;
    return n;
}

static void free_recs(void) {
    for (int i = 0; i < n_recs; i++) {
        for (int k = 0; k < recs[i].n_fields; k++) free(recs[i].fields[k]);
        for (int k = 0; k < recs[i].n_bins; k++) free(recs[i].bins[k]);
    }
    n_recs = 0;
}

/* Connects client `c` through a CONNECT record (accepted); writes its sid. */
static void connect_client(peer *p, const char *c, char *sid, size_t cap) {
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"%s\"}", c);
    rec *r = WAIT_REC(p, IOBUS_RECORD_CONNECT, 1);
    if (r) {
        CHECK(r->n_fields == 3 && strcmp(r->fields[0], "/") == 0 && strlen(r->fields[1]) == 20);
        CHECK_HAS(r->fields[2], "\"headers\"");
        CHECK(r->handle != 0 && r->status == 0);
        CHECK_OK(iobus_connect_accept((iobus_connect *)(uintptr_t)r->handle));
    }
    char needle[64];
    snprintf(needle, sizeof needle, "{\"t\":\"connect\",\"c\":\"%s\"", c);
    const char *l = PEER_WAIT(p, needle, 5000);
    CHECK(l && h_json_field(l, "sid", sid, cap));
    CHECK(r && strcmp(r->fields[1], sid) == 0);
}

/* A callback that is registered but, in this mode, never called. */
static int callback_calls;
static void on_cb_event(void *ud, const iobus_event *ev) {
    (void)ud;
    (void)ev;
    callback_calls++;
}

static void test_bad_subscriptions(void) {
    SECTION("subscriptions: bad arguments");
    CHECK_ST(iobus_server_subscribe(NULL, NULL, IOBUS_RECORD_EVENT, "e", NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_subscribe(server, NULL, 99, NULL, NULL), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "99");
    CHECK_ST(iobus_server_subscribe(server, NULL, -1, NULL, NULL), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_server_subscribe(server, NULL, IOBUS_RECORD_ACK, NULL, NULL), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "completion");
    CHECK_ST(iobus_server_subscribe(server, NULL, IOBUS_RECORD_BROADCAST_ACK, NULL, NULL), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_server_subscribe(server, NULL, IOBUS_RECORD_SOCKETS, NULL, NULL), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_server_subscribe(server, NULL, IOBUS_RECORD_ROOMS, NULL, NULL), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_server_subscribe(server, NULL, IOBUS_RECORD_CONNECT, "e", NULL), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "NULL");
    CHECK_ST(iobus_server_subscribe(server, NULL, IOBUS_RECORD_EVENT, BAD_UTF8, NULL), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_server_subscribe(server, BAD_UTF8, IOBUS_RECORD_EVENT, "e", NULL), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_server_unsubscribe(NULL, NULL, IOBUS_RECORD_EVENT, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_server_unsubscribe(server, NULL, 42, NULL), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_ST(iobus_server_unsubscribe(server, NULL, IOBUS_RECORD_DISCONNECT, "x"), IOBUS_ERR_INVALID_ARGUMENT);
    /* Removing what is not there does nothing. */
    CHECK_OK(iobus_server_unsubscribe(server, "/elsewhere", IOBUS_RECORD_EVENT, "nothing"));
}

static void test_events(peer *p, const char *sid_a) {
    SECTION("records without callbacks: named and other events, acks both ways");
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"echo\",\"args\":[\"x\",{\"$bin\":\"AAEC\"}],\"ack\":true,\"seq\":1}");
    rec *r = WAIT_REC(p, IOBUS_RECORD_EVENT, 2);
    if (r) {
        CHECK(r->n_fields == 4 && strcmp(r->fields[0], "/") == 0 && strcmp(r->fields[1], sid_a) == 0);
        CHECK_STR(r->fields[2], "echo");
        CHECK_STR(r->fields[3], "[\"x\",{\"_placeholder\":true,\"num\":0}]");
        CHECK(r->n_bins == 1 && r->bin_len[0] == 3 && memcmp(r->bins[0], "\x00\x01\x02", 3) == 0);
        CHECK(r->handle != 0);
        iobus_buf back = {(const uint8_t *)"\x09", 1};
        CHECK_OK(iobus_ack_send((iobus_ack *)(uintptr_t)r->handle, "[\"ok\",{\"_placeholder\":true,\"num\":0}]",
                                SIZE_MAX, &back, 1));
    }
    PEER_WAIT(p, "{\"t\":\"ack\",\"c\":\"a\",\"seq\":1,\"args\":[\"ok\",{\"$bin\":\"CQ==\"}]}", 5000);

    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"other\",\"args\":[1]}");
    r = WAIT_REC(p, IOBUS_RECORD_EVENT, 3);
    CHECK(r && strcmp(r->fields[2], "other") == 0 && strcmp(r->fields[3], "[1]") == 0 && r->handle == 0);

    /* Emit-with-ack to one socket, completion without a callback. */
    peer_reply(p, "a", "ask one", "\"mode\":\"args\",\"args\":[\"one\",{\"$bin\":\"Bw==\"}]");
    CHECK_OK(iobus_socket_emit_with_ack(server, sid_a, "ask one", "[]", SIZE_MAX, NULL, 0, (uint64_t)T(5000), NULL,
                                        (void *)(uintptr_t)70));
    r = WAIT_REC(p, IOBUS_RECORD_ACK, 70);
    if (r) {
        CHECK(r->status == IOBUS_ACK_OK && r->handle == 0 && r->n_fields == 3);
        CHECK_STR(r->fields[1], sid_a);
        CHECK_STR(r->fields[2], "[\"one\",{\"_placeholder\":true,\"num\":0}]");
        CHECK(r->n_bins == 1 && r->bin_len[0] == 1 && r->bins[0][0] == 7);
    }
}

static void test_completions(peer *p, const char *sid_a, const char *sid_b) {
    SECTION("records of completions: emit with acks to many (binary, timeout), fetch, all rooms, server-side");
    peer_reply(p, "a", "ask", "\"mode\":\"args\",\"args\":[\"a\",{\"$bin\":\"AQI=\"}]");
    peer_reply(p, "b", "ask", "\"mode\":\"args\",\"args\":[\"b\"]");
    iobus_selection all = {0};
    all.timeout_ms = (uint64_t)T(5000);
    CHECK_OK(iobus_selection_emit_with_ack(server, &all, "ask", NULL, 0, NULL, 0, NULL, (void *)(uintptr_t)40));
    rec *r = WAIT_REC(p, IOBUS_RECORD_BROADCAST_ACK, 40);
    if (r) {
        CHECK(r->status == IOBUS_ACK_OK && r->handle == 2 && r->n_fields == 1);
        CHECK_HAS(r->fields[0], "[\"a\",{\"_placeholder\":true,\"num\":0}]");
        CHECK_HAS(r->fields[0], "[\"b\"]");
        CHECK(r->n_bins == 1 && r->bin_len[0] == 2 && memcmp(r->bins[0], "\x01\x02", 2) == 0);
    }

    peer_reply(p, "b", "ask slow", "\"mode\":\"ignore\"");
    iobus_selection timed = {0};
    timed.timeout_ms = (uint64_t)T(300);
    CHECK_OK(iobus_selection_emit_with_ack(server, &timed, "ask slow", "[5]", SIZE_MAX, NULL, 0, NULL,
                                           (void *)(uintptr_t)41));
    r = WAIT_REC(p, IOBUS_RECORD_BROADCAST_ACK, 41);
    CHECK(r && r->status == IOBUS_ACK_TIMEOUT && r->handle == 2 && strcmp(r->fields[0], "[[5]]") == 0 &&
          r->n_bins == 0);

    CHECK_OK(iobus_socket_join(server, sid_b, "green"));
    CHECK_OK(iobus_socket_set_data(server, sid_b, "{\"who\":\"b\"}", SIZE_MAX));
    const char *green[] = {"green"};
    iobus_selection in_green = {0};
    in_green.rooms = green;
    in_green.room_count = 1;
    CHECK_OK(iobus_selection_fetch_sockets(server, &in_green, NULL, (void *)(uintptr_t)50));
    r = WAIT_REC(p, IOBUS_RECORD_SOCKETS, 50);
    if (r) {
        CHECK(r->status == 0 && r->handle == 0 && r->n_fields == 1);
        CHECK_HAS(r->fields[0], sid_b);
        CHECK_HAS(r->fields[0], "\"data\":{\"who\":\"b\"}");
        CHECK_HAS(r->fields[0], "\"green\"");
        CHECK(strstr(r->fields[0], sid_a) == NULL);
    }

    CHECK_OK(iobus_namespace_all_rooms(server, "/", NULL, (void *)(uintptr_t)60));
    r = WAIT_REC(p, IOBUS_RECORD_ROOMS, 60);
    if (r) {
        CHECK_HAS(r->fields[0], "\"green\"");
        CHECK_HAS(r->fields[0], sid_a);
        CHECK_HAS(r->fields[0], sid_b);
    }

    CHECK_OK(iobus_namespace_server_side_emit_with_ack(server, NULL, "servers?", NULL, 0, NULL, 0, (uint64_t)T(1000),
                                                       NULL, (void *)(uintptr_t)80));
    r = WAIT_REC(p, IOBUS_RECORD_BROADCAST_ACK, 80);
    CHECK(r && r->status == IOBUS_ACK_OK && r->handle == 0 && strcmp(r->fields[0], "[]") == 0);
    /* A server-side emit subscription on one server: never a record. */
    CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_SERVER_SIDE_EMIT, NULL, (void *)(uintptr_t)90));
    CHECK_OK(iobus_namespace_server_side_emit(server, NULL, "servers!", NULL, 0, NULL, 0));
    h_sleep_ms(T(100));
    CHECK(count_recs(IOBUS_RECORD_SERVER_SIDE_EMIT, 90) == 0);
    CHECK_OK(iobus_server_unsubscribe(server, NULL, IOBUS_RECORD_SERVER_SIDE_EMIT, NULL));
}

/* Emits `event` from client a, then `mark`, and waits for the `mark` record:
 * whatever `event` produced is in by then. */
static void emit_then_mark(peer *p, const char *event) {
    static int seq = 100;
    seq++;
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"%s\",\"args\":[%d]}", event, seq);
    peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"mark\",\"args\":[%d]}", seq);
    rec *r = WAIT_REC(p, IOBUS_RECORD_EVENT, 6);
    char want[32];
    snprintf(want, sizeof want, "[%d]", seq);
    CHECK(r && strcmp(r->fields[3], want) == 0);
}

static int event_recs(uint64_t user, const char *name) {
    take_records();
    int n = 0;
    for (int i = 0; i < n_recs; i++) {
        if (!recs[i].used && recs[i].kind == IOBUS_RECORD_EVENT && recs[i].user == user &&
            strcmp(recs[i].fields[2], name) == 0) {
            recs[i].used = 1;
            n++;
        }
    }
    return n;
}

static void test_off(peer *p) {
    SECTION("off both ways: a subscription, and a callback registration");
    CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_EVENT, "mark", (void *)(uintptr_t)6));

    /* The named subscription removed: `echo` falls to the catch-all. */
    CHECK_OK(iobus_server_unsubscribe(server, NULL, IOBUS_RECORD_EVENT, "echo"));
    emit_then_mark(p, "echo");
    CHECK(event_recs(3, "echo") == 1 && event_recs(2, "echo") == 0);

    /* A subscription removed through iobus_server_on_event(NULL). */
    CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_EVENT, "echo", (void *)(uintptr_t)5));
    emit_then_mark(p, "echo");
    CHECK(event_recs(5, "echo") == 1);
    CHECK_OK(iobus_server_on_event(server, NULL, "echo", NULL, NULL));
    emit_then_mark(p, "echo");
    CHECK(event_recs(5, "echo") == 0 && event_recs(3, "echo") == 1);

    /* A callback registration: in this mode its calls are records too. */
    CHECK_OK(iobus_server_on_event(server, NULL, "cb", on_cb_event, (void *)(uintptr_t)9));
    emit_then_mark(p, "cb");
    CHECK(event_recs(9, "cb") == 1);
    CHECK_OK(iobus_server_unsubscribe(server, NULL, IOBUS_RECORD_EVENT, "cb"));
    emit_then_mark(p, "cb");
    CHECK(event_recs(9, "cb") == 0 && event_recs(3, "cb") == 1);
    /* A subscription replaces a callback of the same slot, and back. */
    CHECK_OK(iobus_server_on_any(server, NULL, on_cb_event, (void *)(uintptr_t)10));
    emit_then_mark(p, "other");
    CHECK(event_recs(10, "other") == 1 && event_recs(3, "other") == 0);
    CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_EVENT, NULL, (void *)(uintptr_t)3));
    emit_then_mark(p, "other");
    CHECK(event_recs(3, "other") == 1 && event_recs(10, "other") == 0);

    /* The catch-all removed: nothing for unnamed events. */
    CHECK_OK(iobus_server_unsubscribe(server, NULL, IOBUS_RECORD_EVENT, NULL));
    emit_then_mark(p, "other");
    CHECK(event_recs(3, "other") == 0);
    CHECK(callback_calls == 0);
}

static void test_connect_disconnect_off(peer *p, const char *sid_b) {
    char needle[128];
    SECTION("disconnect records; connect and disconnect subscriptions removed");
    peer_cmd(p, "{\"op\":\"disconnect\",\"c\":\"b\"}");
    rec *r = WAIT_REC(p, IOBUS_RECORD_DISCONNECT, 4);
    if (r) {
        CHECK(r->n_fields == 4 && r->handle == 0);
        CHECK_STR(r->fields[1], sid_b);
        CHECK_STR(r->fields[2], "client namespace disconnect");
        CHECK_HAS(r->fields[3], "\"green\"");
        CHECK_HAS(r->fields[3], sid_b);
    }
    CHECK_OK(iobus_server_unsubscribe(server, NULL, IOBUS_RECORD_CONNECT, NULL));
    CHECK_OK(iobus_server_unsubscribe(server, NULL, IOBUS_RECORD_DISCONNECT, NULL));
    char sid_c[32];
    CHECK(peer_connect(p, "c", "", sid_c, sizeof sid_c)); /* accepted: no handler */
    peer_cmd(p, "{\"op\":\"disconnect\",\"c\":\"c\"}");
    snprintf(needle, sizeof needle, "{\"t\":\"disconnect\",\"c\":\"c\"");
    PEER_WAIT(p, needle, 5000);
    h_sleep_ms(T(100));
    CHECK(count_recs(IOBUS_RECORD_CONNECT, 1) == 0 && count_recs(IOBUS_RECORD_DISCONNECT, 4) == 0);

    SECTION("iobus_server_poll releases a subscription's record: the connection is refused");
    CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_CONNECT, NULL, (void *)(uintptr_t)1));
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"d\"}");
    int64_t deadline = h_now_ms() + T(5000);
    int refused = 0;
    while (!refused && h_now_ms() < deadline) {
        CHECK_OK(iobus_server_poll(server, 16, NULL));
        peer_read_available(p, 10);
        refused = peer_count(p, "{\"t\":\"connect_error\",\"c\":\"d\",\"message\":\"Connection refused\"}");
    }
    CHECK(refused == 1);
}

int main(void) {
    h_init(180);
    iobus_config *cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_dispatch(cfg, IOBUS_DISPATCH_POLL));
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);
    /* Nothing here is pumped through iobus_server_poll unless a test says so. */
    h_pump_server = NULL;

    test_bad_subscriptions();
    CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_CONNECT, NULL, (void *)(uintptr_t)1));
    CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_EVENT, "echo", (void *)(uintptr_t)2));
    CHECK_OK(iobus_server_subscribe(server, "/", IOBUS_RECORD_EVENT, NULL, (void *)(uintptr_t)3));
    CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_DISCONNECT, NULL, (void *)(uintptr_t)4));
    CHECK_OK(iobus_server_start(server, NULL, 0));
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(server, &port));
    peer *p = peer_start(port);
    CHECK(p != NULL);
    if (p) {
        char sid_a[32] = "", sid_b[32] = "";
        SECTION("records without callbacks: connects");
        connect_client(p, "a", sid_a, sizeof sid_a);
        connect_client(p, "b", sid_b, sizeof sid_b);
        test_events(p, sid_a);
        test_completions(p, sid_a, sid_b);
        test_off(p);
        test_connect_disconnect_off(p, sid_b);

        SECTION("free with records pending and completions asked for without a callback");
        CHECK_OK(iobus_server_subscribe(server, NULL, IOBUS_RECORD_EVENT, NULL, (void *)(uintptr_t)3));
        peer_reply(p, "a", "never", "\"mode\":\"ignore\"");
        iobus_selection all = {0};
        CHECK_OK(iobus_selection_emit_with_ack(server, &all, "never", NULL, 0, NULL, 0, NULL, NULL));
        CHECK_OK(iobus_socket_emit_with_ack(server, sid_a, "never", NULL, 0, NULL, 0, 0, NULL, NULL));
        peer_cmd(p, "{\"op\":\"emit\",\"c\":\"a\",\"event\":\"left\",\"args\":[],\"ack\":true,\"seq\":9}");
        peer_cmd(p, "{\"op\":\"connect\",\"c\":\"e\"}");
        peer_settle(p, 200);
        iobus_server_free(server);
        server = NULL;
        PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"a\"", 5000);
        peer_stop(p);
    } else {
        iobus_server_free(server);
    }
    CHECK(malformed == 0);
    free_recs();
    h_log_clear();
    return h_finish("test_records");
}
