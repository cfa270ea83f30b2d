/*
 * Selections against real socket.io-client peers, callbacks on the
 * library's dispatcher thread: iobus_selection (rooms, except rooms,
 * several except sids, volatile, local) for emit, emit with acks (every
 * reply, binary replies renumbered, the expected count, a timeout, a
 * recipient that leaves while the acks are pending, nobody selected),
 * fetch (id, handshake, rooms, data), join, leave and disconnect; socket
 * data; all rooms; server-side emits on a single server; an unknown
 * namespace that selects nobody and stays closed; bad arguments of every
 * kind; every completion called exactly once, also when the server is
 * freed while some are pending.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "iobus.h"

#define BAD_UTF8 "\xff\xfe"
#define SOME_SID "AAAAAAAAAAAAAAAAAAAA"

static iobus_server *server;

/* ---- completions: each remembers its calls and what it got ---- */

typedef struct acks {
    const char *name;
    int calls;
    int status;
    size_t expected;
    char replies[4096];
    size_t binary_count;
    char bins[512]; /* "len:hex,len:hex" */
} acks;

static void hexes(const iobus_buf *bin, size_t n, char *out, size_t cap) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used + 8 < cap; i++) {
        used += (size_t)snprintf(out + used, cap - used, "%s%zu:", i ? "," : "", bin[i].len);
        for (size_t j = 0; j < bin[i].len && used + 3 < cap; j++) {
            used += (size_t)snprintf(out + used, cap - used, "%02x", bin[i].data[j]);
        }
    }
}

static void on_acks(void *ud, iobus_ack_status status, size_t expected, const char *replies, size_t len,
                    const iobus_buf *binary, size_t binary_count) {
    acks *a = ud;
    a->calls++;
    a->status = (int)status;
    a->expected = expected;
    CHECK(replies != NULL && strlen(replies) == len);
    CHECK(binary_count == 0 || binary != NULL);
    snprintf(a->replies, sizeof a->replies, "%s", replies ? replies : "");
    a->binary_count = binary_count;
    hexes(binary, binary_count, a->bins, sizeof a->bins);
    h_log_add("acks %s status=%d expected=%zu replies=%s bin=[%s]", a->name, a->status, expected, a->replies, a->bins);
}

typedef struct one_ack {
    const char *name;
    int calls;
    int status;
} one_ack;

static void on_one_ack(void *ud, iobus_ack_status status, const iobus_event *reply) {
    one_ack *a = ud;
    a->calls++;
    a->status = (int)status;
    h_log_add("ack %s status=%d args=%s", a->name, (int)status, reply ? iobus_event_args(reply, NULL) : "-");
}

static void on_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    (void)ud;
    h_log_add("disconnect nsp=%s sid=%s reason=%s rooms=%s", nsp, sid, reason, rooms);
}

static int server_side_calls;
static void on_server_side(void *ud, const iobus_event *ev) {
    (void)ud;
    (void)ev;
    server_side_calls++;
}

/* ---- helpers ---- */

static const char *wait_event(peer *p, const char *c, const char *event_and_args) {
    char needle[1024];
    snprintf(needle, sizeof needle, "{\"t\":\"event\",\"c\":\"%s\",\"event\":%s", c, event_and_args);
    return PEER_WAIT(p, needle, 5000);
}

static int event_count(peer *p, const char *c, const char *event) {
    char needle[256];
    snprintf(needle, sizeof needle, "{\"t\":\"event\",\"c\":\"%s\",\"event\":\"%s\"", c, event);
    return peer_count(p, needle);
}

/* Emits `barrier<n>` to everyone and waits until the four clients have it:
 * whatever was emitted before has arrived (or never will). */
static void barrier(peer *p, int n) {
    char event[32], args[64];
    snprintf(event, sizeof event, "barrier%d", n);
    iobus_selection all = {0};
    CHECK_OK(iobus_selection_emit(server, &all, event, NULL, 0, NULL, 0));
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "\"%s\"", event);
        wait_event(p, names[i], args);
    }
}

/* The number after `"num":` following `prefix` in `json`, or -1. */
static int placeholder_after(const char *json, const char *prefix) {
    const char *at = strstr(json, prefix);
    if (!at) return -1;
    at = strstr(at, "\"num\":");
    return at ? atoi(at + 6) : -1;
}

/* Attachment `index` of a "len:hex,len:hex" list, as "len:hex", or "" (index < 0 or past the end). */
static void bin_at(const char *bins, int index, char *out, size_t cap) {
    out[0] = '\0';
    const char *at = index >= 0 ? bins : NULL;
    for (int i = 0; i < index && at; i++) {
        at = strchr(at, ',');
        if (at) at++;
    }
    if (!at || !*at) return;
    size_t n = strcspn(at, ",");
    if (n >= cap) n = cap - 1;
    memcpy(out, at, n);
    out[n] = '\0';
}

/* ---- sections ---- */

static void test_bad_arguments(const char *sid_a) {
    SECTION("bad arguments: NULL, invalid UTF-8 and JSON, bad ids, unknown flags, reserved names");
    iobus_selection all = {0};
    const char *with_null[] = {"red", NULL};
    const char *bad_text[] = {BAD_UTF8};
    const char *not_a_sid[] = {"not-a-socket-id"};
    const char *sids[] = {sid_a, SOME_SID};
    iobus_buf one = {(const uint8_t *)"x", 1};
    acks never = {"never", 0, -1, 0, "", 0, ""};
    h_answer never_json = {"never", 0, ""};

    CHECK_ST(iobus_selection_emit(NULL, &all, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_emit(server, NULL, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "selection");
    CHECK_ST(iobus_selection_emit(server, &all, NULL, NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);

    iobus_selection s = {0};
    s.room_count = 1; /* rooms NULL */
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    s.rooms = with_null;
    s.room_count = 2;
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "rooms[1]");
    s.rooms = bad_text;
    s.room_count = 1;
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_INVALID_UTF8);
    memset(&s, 0, sizeof s);
    s.except_rooms = bad_text;
    s.except_room_count = 1;
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_INVALID_UTF8);
    memset(&s, 0, sizeof s);
    s.nsp = BAD_UTF8;
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_INVALID_UTF8);
    memset(&s, 0, sizeof s);
    s.except_sids = not_a_sid;
    s.except_sid_count = 1;
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "except_sids[0]");
    s.except_sids = with_null;
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_INVALID_ARGUMENT);
    s.except_sids = sids; /* a connected id and one that is not: both fine */
    s.except_sid_count = 2;
    CHECK_OK(iobus_selection_emit(server, &s, "harmless", NULL, 0, NULL, 0));
    s.except_sids = NULL;
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    memset(&s, 0, sizeof s);
    s.flags = 4;
    CHECK_ST(iobus_selection_emit(server, &s, "e", NULL, 0, NULL, 0), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "flags");
    s.flags = IOBUS_SELECTION_VOLATILE | IOBUS_SELECTION_LOCAL | 0x80000000u;
    CHECK_ST(iobus_selection_fetch_sockets(server, &s, h_on_json, &never_json), IOBUS_ERR_INVALID_ARGUMENT);

    CHECK_ST(iobus_selection_emit(server, &all, BAD_UTF8, NULL, 0, NULL, 0), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_selection_emit(server, &all, "e", "[1,", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_selection_emit(server, &all, "e", "{}", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_selection_emit(server, &all, "e", "[\"" BAD_UTF8 "\"]", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_selection_emit(server, &all, "e", "[1]", SIZE_MAX, &one, 1), IOBUS_ERR_INVALID_BINARY);
    CHECK_ST(iobus_selection_emit(server, &all, "e", "[{\"_placeholder\":true,\"num\":0}]", SIZE_MAX, NULL, 1),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_emit(server, &all, "connect", NULL, 0, NULL, 0), IOBUS_ERR_RESERVED_EVENT);

    /* Emits with acks that fail never call their completion. */
    CHECK_ST(iobus_selection_emit_with_ack(server, &all, "e", NULL, 0, NULL, 0, NULL, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "IOBUS_DISPATCH_POLL");
    CHECK_ST(iobus_selection_emit_with_ack(server, &all, "disconnecting", NULL, 0, NULL, 0, on_acks, &never),
             IOBUS_ERR_RESERVED_EVENT);
    CHECK_ST(iobus_selection_emit_with_ack(server, &all, "e", "[", SIZE_MAX, NULL, 0, on_acks, &never),
             IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_selection_emit_with_ack(server, &all, "e", "[]", SIZE_MAX, &one, 1, on_acks, &never),
             IOBUS_ERR_INVALID_BINARY);
    CHECK_ST(iobus_selection_emit_with_ack(server, NULL, "e", NULL, 0, NULL, 0, on_acks, &never),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_fetch_sockets(server, &all, NULL, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_fetch_sockets(server, NULL, h_on_json, &never_json), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_namespace_all_rooms(server, NULL, NULL, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_namespace_all_rooms(server, BAD_UTF8, h_on_json, &never_json), IOBUS_ERR_INVALID_UTF8);

    CHECK_ST(iobus_selection_join(server, &all, NULL, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_join(server, &all, with_null, 2), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_leave(server, &all, bad_text, 1), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_selection_join(server, NULL, with_null, 1), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_disconnect(server, NULL, false), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_selection_disconnect(NULL, &all, false), IOBUS_ERR_NULL_ARGUMENT);

    CHECK_ST(iobus_socket_set_data(server, sid_a, "{\"a\":", SIZE_MAX), IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_socket_set_data(server, sid_a, "\"" BAD_UTF8 "\"", SIZE_MAX), IOBUS_ERR_INVALID_UTF8);
    CHECK_ST(iobus_socket_set_data(server, SOME_SID, "1", SIZE_MAX), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_ST(iobus_socket_set_data(server, NULL, "1", SIZE_MAX), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_data(server, sid_a, NULL, NULL), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_socket_data(server, "nope", NULL, NULL), IOBUS_ERR_UNKNOWN_SOCKET);

    CHECK_ST(iobus_namespace_server_side_emit(server, NULL, "connect", NULL, 0, NULL, 0), IOBUS_ERR_RESERVED_EVENT);
    CHECK_ST(iobus_namespace_server_side_emit(server, NULL, NULL, NULL, 0, NULL, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_namespace_server_side_emit(server, NULL, "e", "[", SIZE_MAX, NULL, 0), IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_namespace_server_side_emit_with_ack(server, NULL, "e", "{}", SIZE_MAX, NULL, 0, 100, on_acks, &never),
             IOBUS_ERR_INVALID_JSON);
    CHECK_ST(iobus_namespace_server_side_emit_with_ack(server, NULL, "e", NULL, 0, NULL, 0, 100, NULL, NULL),
             IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_namespace_server_side_emit_with_ack(server, NULL, "disconnect", NULL, 0, NULL, 0, 100, on_acks,
                                                       &never),
             IOBUS_ERR_RESERVED_EVENT);

    /* Subscriptions deliver records: not for a server that calls callbacks. */
    CHECK_ST(iobus_server_subscribe(server, NULL, IOBUS_RECORD_EVENT, "e", NULL), IOBUS_ERR_WRONG_STATE);
    CHECK_HAS(iobus_last_error(), "IOBUS_DISPATCH_POLL");

    h_settle(100);
    CHECK(never.calls == 0 && never_json.calls == 0);
}

static void test_emit(peer *p, char sids[4][32]) {
    const char *red[] = {"red"};
    const char *blue[] = {"blue"};
    const char *red_blue[] = {"red", "blue", "red"};
    SECTION("selection emit: rooms (union), except rooms, several except sids, own rooms, local, binary");
    /* a: red; b: red, blue; c: blue; d: none. */
    iobus_selection s = {0};
    s.rooms = red_blue;
    s.room_count = 3;
    const char *not_a_c[] = {sids[0], sids[2]};
    s.except_sids = not_a_c;
    s.except_sid_count = 2;
    CHECK_OK(iobus_selection_emit(server, &s, "e1", "[\"b only\"]", SIZE_MAX, NULL, 0));

    memset(&s, 0, sizeof s);
    const char *not_abc[] = {sids[0], sids[1], sids[2], sids[1]};
    s.except_sids = not_abc;
    s.except_sid_count = 4;
    CHECK_OK(iobus_selection_emit(server, &s, "e2", "[\"d only\"]", SIZE_MAX, NULL, 0));

    memset(&s, 0, sizeof s);
    s.rooms = red;
    s.room_count = 1;
    s.except_rooms = blue;
    s.except_room_count = 1;
    CHECK_OK(iobus_selection_emit(server, &s, "e3", "[\"a only\"]", SIZE_MAX, NULL, 0));

    memset(&s, 0, sizeof s);
    const char *own_c[] = {sids[2]};
    s.rooms = own_c;
    s.room_count = 1;
    s.nsp = "/";
    CHECK_OK(iobus_selection_emit(server, &s, "e4", "[\"c by its own room\"]", SIZE_MAX, NULL, 0));

    memset(&s, 0, sizeof s);
    s.rooms = blue;
    s.room_count = 1;
    s.flags = IOBUS_SELECTION_LOCAL;
    iobus_buf bin = {(const uint8_t *)"\x00\xff", 2};
    CHECK_OK(iobus_selection_emit(server, &s, "e5", "[{\"_placeholder\":true,\"num\":0},\"local\"]", SIZE_MAX, &bin, 1));

    memset(&s, 0, sizeof s);
    s.except_rooms = red_blue;
    s.except_room_count = 2;
    CHECK_OK(iobus_selection_emit(server, &s, "e6", "[\"in no room\"]", SIZE_MAX, NULL, 0));

    barrier(p, 1);
    CHECK(event_count(p, "a", "e1") == 0 && event_count(p, "b", "e1") == 1 && event_count(p, "c", "e1") == 0 &&
          event_count(p, "d", "e1") == 0);
    CHECK(event_count(p, "a", "e2") == 0 && event_count(p, "b", "e2") == 0 && event_count(p, "c", "e2") == 0 &&
          event_count(p, "d", "e2") == 1);
    CHECK(event_count(p, "a", "e3") == 1 && event_count(p, "b", "e3") == 0 && event_count(p, "c", "e3") == 0 &&
          event_count(p, "d", "e3") == 0);
    CHECK(event_count(p, "a", "e4") == 0 && event_count(p, "b", "e4") == 0 && event_count(p, "c", "e4") == 1 &&
          event_count(p, "d", "e4") == 0);
    CHECK(event_count(p, "a", "e5") == 0 && event_count(p, "b", "e5") == 1 && event_count(p, "c", "e5") == 1 &&
          event_count(p, "d", "e5") == 0);
    CHECK(peer_count(p, "\"event\":\"e5\",\"args\":[{\"$bin\":\"AP8=\"},\"local\"]") == 2);
    CHECK(event_count(p, "a", "e6") == 0 && event_count(p, "b", "e6") == 0 && event_count(p, "c", "e6") == 0 &&
          event_count(p, "d", "e6") == 1);
    CHECK(event_count(p, "a", "harmless") == 0 && peer_count(p, "\"event\":\"harmless\"") == 3);

    SECTION("selection emit: volatile");
    memset(&s, 0, sizeof s);
    const char *not_a[] = {sids[0]};
    s.except_sids = not_a;
    s.except_sid_count = 1;
    s.flags = IOBUS_SELECTION_VOLATILE;
    CHECK_OK(iobus_selection_emit(server, &s, "v", "[1]", SIZE_MAX, NULL, 0));
    barrier(p, 2);
    /* Dropped for a client that cannot take it now; never twice, never to a. */
    CHECK(event_count(p, "a", "v") == 0);
    CHECK(event_count(p, "b", "v") <= 1 && event_count(p, "c", "v") <= 1 && event_count(p, "d", "v") <= 1);
}

static void test_unknown_namespace(peer *p) {
    SECTION("an unknown namespace selects nobody and is not opened");
    iobus_selection s = {0};
    s.nsp = "/nowhere";
    static acks none = {"nowhere", 0, -1, 0, "", 0, ""};
    static h_answer fetched = {"nowhere-fetch", 0, ""};
    static h_answer rooms = {"nowhere-rooms", 0, ""};
    CHECK_OK(iobus_selection_emit(server, &s, "boo", NULL, 0, NULL, 0));
    CHECK_OK(iobus_selection_emit_with_ack(server, &s, "boo", NULL, 0, NULL, 0, on_acks, &none));
    CHECK_OK(iobus_selection_fetch_sockets(server, &s, h_on_json, &fetched));
    CHECK_OK(iobus_namespace_all_rooms(server, "/nowhere", h_on_json, &rooms));
    const char *r[] = {"x"};
    CHECK_OK(iobus_selection_join(server, &s, r, 1));
    CHECK_OK(iobus_selection_leave(server, &s, r, 1));
    CHECK_OK(iobus_selection_disconnect(server, &s, true));
    CHECK_OK(iobus_namespace_server_side_emit(server, "/nowhere", "boo", NULL, 0, NULL, 0));
    LOG_WAIT("acks nowhere status=0 expected=0 replies=[] bin=[]", 3000);
    LOG_WAIT("json nowhere-fetch", 3000);
    LOG_WAIT("json nowhere-rooms", 3000);
    CHECK_STR(fetched.json, "[]");
    CHECK_STR(rooms.json, "[]");
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"ghost\",\"nsp\":\"/nowhere\"}");
    PEER_WAIT(p, "{\"t\":\"connect_error\",\"c\":\"ghost\",\"message\":\"Invalid namespace\"}", 5000);
    CHECK(none.calls == 1 && fetched.calls == 1 && rooms.calls == 1);
}

static void test_emit_with_ack(peer *p, char sids[4][32]) {
    SECTION("selection emit with ack: every reply, binary kept, one completion");
    static acks all3 = {"all3", 0, -1, 0, "", 0, ""};
    peer_reply(p, "a", "ask", "\"mode\":\"args\",\"args\":[\"a\",{\"$bin\":\"AQI=\"}]");
    peer_reply(p, "b", "ask", "\"mode\":\"args\",\"args\":[\"b\"]");
    peer_reply(p, "c", "ask", "\"mode\":\"args\",\"args\":[{\"k\":{\"$bin\":\"Aw==\"}},\"c\",{\"$bin\":\"\"}]");
    const char *red_blue[] = {"red", "blue"};
    iobus_selection s = {0};
    s.rooms = red_blue;
    s.room_count = 2;
    s.timeout_ms = (uint64_t)T(5000);
    iobus_buf q = {(const uint8_t *)"?", 1};
    CHECK_OK(iobus_selection_emit_with_ack(server, &s, "ask", "[\"q\",{\"_placeholder\":true,\"num\":0}]", SIZE_MAX,
                                           &q, 1, on_acks, &all3));
    LOG_WAIT("acks all3 status=0 expected=3", 5000);
    CHECK(all3.calls == 1 && all3.binary_count == 3);
    CHECK_HAS(all3.replies, "[\"b\"]");
    /* Each reply's placeholders point at its own attachments in the one list. */
    char bin[64];
    bin_at(all3.bins, placeholder_after(all3.replies, "[\"a\","), bin, sizeof bin);
    CHECK_STR(bin, "2:0102");
    bin_at(all3.bins, placeholder_after(all3.replies, "[{\"k\":"), bin, sizeof bin);
    CHECK_STR(bin, "1:03");
    bin_at(all3.bins, placeholder_after(all3.replies, "\"c\","), bin, sizeof bin);
    CHECK_STR(bin, "0:");
    wait_event(p, "a", "\"ask\",\"args\":[\"q\",{\"$bin\":\"Pw==\"}],\"ack\":true}");
    wait_event(p, "b", "\"ask\",\"args\":[\"q\",{\"$bin\":\"Pw==\"}],\"ack\":true}");
    wait_event(p, "c", "\"ask\",\"args\":[\"q\",{\"$bin\":\"Pw==\"}],\"ack\":true}");
    CHECK(event_count(p, "d", "ask") == 0);

    SECTION("selection emit with ack: timed out, with the replies that came");
    static acks late = {"late", 0, -1, 0, "", 0, ""};
    peer_reply(p, "d", "ask late", "\"mode\":\"ignore\"");
    const char *b_d[] = {sids[1], sids[3]};
    memset(&s, 0, sizeof s);
    s.rooms = b_d;
    s.room_count = 2;
    s.timeout_ms = (uint64_t)T(400);
    CHECK_OK(iobus_selection_emit_with_ack(server, &s, "ask late", "[7]", SIZE_MAX, NULL, 0, on_acks, &late));
    LOG_WAIT("acks late status=1 expected=2 replies=[[7]] bin=[]", 5000);

    SECTION("selection emit with ack: a recipient leaves while the acks are pending");
    static acks left = {"left", 0, -1, 0, "", 0, ""};
    peer_reply(p, "c", "ask stay", "\"mode\":\"ignore\"");
    const char *a_c[] = {sids[0], sids[2]};
    memset(&s, 0, sizeof s);
    s.rooms = a_c;
    s.room_count = 2; /* no timeout */
    CHECK_OK(iobus_selection_emit_with_ack(server, &s, "ask stay", "[8]", SIZE_MAX, NULL, 0, on_acks, &left));
    wait_event(p, "c", "\"ask stay\"");
    h_settle(300);
    CHECK(left.calls == 0); /* a answered; c has not */
    peer_cmd(p, "{\"op\":\"close\",\"c\":\"c\"}");
    LOG_WAIT("acks left status=0 expected=2 replies=[[8]] bin=[]", 5000);

    SECTION("selection emit with ack: nobody selected");
    static acks nobody = {"nobody", 0, -1, 0, "", 0, ""};
    const char *empty_room[] = {"empty"};
    memset(&s, 0, sizeof s);
    s.rooms = empty_room;
    s.room_count = 1;
    CHECK_OK(iobus_selection_emit_with_ack(server, &s, "ask", NULL, 0, NULL, 0, on_acks, &nobody));
    LOG_WAIT("acks nobody status=0 expected=0 replies=[] bin=[]", 3000);

    h_settle(300); /* nothing is called twice */
    CHECK(all3.calls == 1 && late.calls == 1 && left.calls == 1 && nobody.calls == 1);
    CHECK(late.status == IOBUS_ACK_TIMEOUT && left.status == IOBUS_ACK_OK);
}

static void test_fetch_and_data(char sids[4][32]) {
    SECTION("socket data; fetch sockets: id, handshake, rooms, data");
    char *json = NULL;
    size_t len = 0;
    CHECK_OK(iobus_socket_data(server, sids[0], &json, &len));
    CHECK_STR(json, "null");
    CHECK(len == 4);
    iobus_string_free(json);
    const char *data = "{\"name\":\"alice\",\"n\":[1,2]}trailing";
    CHECK_OK(iobus_socket_set_data(server, sids[0], data, strlen("{\"name\":\"alice\",\"n\":[1,2]}")));
    CHECK_OK(iobus_socket_data(server, sids[0], &json, NULL));
    CHECK_STR(json, "{\"name\":\"alice\",\"n\":[1,2]}");
    iobus_string_free(json);
    CHECK_OK(iobus_socket_set_data(server, sids[1], "\"bob\"", SIZE_MAX));

    static h_answer red = {"red", 0, ""};
    const char *rooms[] = {"red"};
    iobus_selection s = {0};
    s.rooms = rooms;
    s.room_count = 1;
    CHECK_OK(iobus_selection_fetch_sockets(server, &s, h_on_json, &red));
    LOG_WAIT("json red", 3000);
    /* Sorted by id; each socket once. */
    const char *first = strcmp(sids[0], sids[1]) < 0 ? sids[0] : sids[1];
    char want[128];
    snprintf(want, sizeof want, "[{\"id\":\"%s\",", first);
    CHECK(strncmp(red.json, want, strlen(want)) == 0);
    snprintf(want, sizeof want, "\"id\":\"%s\"", sids[0]);
    CHECK_HAS(red.json, want);
    snprintf(want, sizeof want, "\"id\":\"%s\"", sids[1]);
    CHECK_HAS(red.json, want);
    CHECK_HAS(red.json, "\"data\":{\"name\":\"alice\",\"n\":[1,2]}");
    CHECK_HAS(red.json, "\"data\":\"bob\"");
    CHECK_HAS(red.json, "\"handshake\":{");
    CHECK_HAS(red.json, "\"auth\":{\"who\":\"a\"}");
    CHECK_HAS(red.json, "\"EIO\":\"4\"");
    CHECK_HAS(red.json, "\"address\":\"127.0.0.1\"");
    snprintf(want, sizeof want, "\"rooms\":[\"%s\",\"red\"]", sids[0]);
    if (strcmp(sids[0], "red") > 0) snprintf(want, sizeof want, "\"rooms\":[\"red\",\"%s\"]", sids[0]);
    CHECK_HAS(red.json, want);
    CHECK(strstr(red.json, sids[2]) == NULL && strstr(red.json, sids[3]) == NULL);

    static h_answer but_a = {"all but a", 0, ""};
    memset(&s, 0, sizeof s);
    const char *not_a[] = {sids[0]};
    s.except_sids = not_a;
    s.except_sid_count = 1;
    CHECK_OK(iobus_selection_fetch_sockets(server, &s, h_on_json, &but_a));
    LOG_WAIT("json all but a", 3000);
    CHECK(strstr(but_a.json, sids[0]) == NULL);
    CHECK(strstr(but_a.json, sids[1]) && strstr(but_a.json, sids[2]) && strstr(but_a.json, sids[3]));
    CHECK(red.calls == 1 && but_a.calls == 1);
}

static void test_join_leave_rooms(char sids[4][32]) {
    SECTION("selection join / leave; all rooms");
    char *json = NULL;
    const char *blue[] = {"blue"};
    const char *not_b[] = {sids[1]};
    const char *new_rooms[] = {"j1", "j2"};
    iobus_selection s = {0};
    s.rooms = blue;
    s.room_count = 1;
    s.except_sids = not_b;
    s.except_sid_count = 1;
    CHECK_OK(iobus_selection_join(server, &s, new_rooms, 2)); /* c only */
    CHECK_OK(iobus_selection_join(server, &s, NULL, 0));
    CHECK_OK(iobus_socket_rooms(server, sids[2], &json, NULL));
    CHECK_HAS(json, "\"j1\"");
    CHECK_HAS(json, "\"j2\"");
    iobus_string_free(json);
    CHECK_OK(iobus_socket_rooms(server, sids[1], &json, NULL));
    CHECK(json && strstr(json, "\"j1\"") == NULL);
    iobus_string_free(json);

    static h_answer all = {"all rooms", 0, ""};
    CHECK_OK(iobus_namespace_all_rooms(server, NULL, h_on_json, &all));
    LOG_WAIT("json all rooms", 3000);
    CHECK_HAS(all.json, "\"blue\"");
    CHECK_HAS(all.json, "\"j1\"");
    CHECK_HAS(all.json, "\"red\"");
    CHECK_HAS(all.json, sids[3]); /* own rooms too */
    /* Sorted: "blue" < "j1" < "j2" < "red". */
    const char *b = strstr(all.json, "\"blue\""), *j = strstr(all.json, "\"j1\""), *r = strstr(all.json, "\"red\"");
    CHECK(b && j && r && b < j && j < r);

    const char *j1[] = {"j1"};
    memset(&s, 0, sizeof s);
    s.rooms = j1;
    s.room_count = 1;
    CHECK_OK(iobus_selection_leave(server, &s, new_rooms, 2));
    CHECK_OK(iobus_socket_rooms(server, sids[2], &json, NULL));
    CHECK(json && strstr(json, "\"j1\"") == NULL && strstr(json, "\"j2\"") == NULL);
    iobus_string_free(json);
    CHECK(all.calls == 1);
}

static void test_server_side(void) {
    SECTION("server-side emit on one server: no other server, no local call");
    static acks servers = {"servers", 0, -1, 0, "", 0, ""};
    CHECK_OK(iobus_server_on_server_side_emit(server, NULL, on_server_side, NULL));
    CHECK_OK(iobus_namespace_server_side_emit(server, NULL, "hello", "[1]", SIZE_MAX, NULL, 0));
    iobus_buf b = {(const uint8_t *)"z", 1};
    CHECK_OK(iobus_namespace_server_side_emit_with_ack(server, "/", "hello?", "[{\"_placeholder\":true,\"num\":0}]",
                                                       SIZE_MAX, &b, 1, T(1000), on_acks, &servers));
    LOG_WAIT("acks servers status=0 expected=0 replies=[] bin=[]", 3000);
    h_settle(100);
    CHECK(server_side_calls == 0 && servers.calls == 1);
    CHECK_OK(iobus_server_on_server_side_emit(server, NULL, NULL, NULL));
}

static void test_disconnect(peer *p, char sids[4][32]) {
    SECTION("selection disconnect: namespace only, then whole connections");
    char needle[256];
    /* c left earlier; b and d remain besides a. */
    const char *red[] = {"red"};
    const char *not_a[] = {sids[0]};
    iobus_selection s = {0};
    s.rooms = red;
    s.room_count = 1;
    s.except_sids = not_a;
    s.except_sid_count = 1;
    CHECK_OK(iobus_selection_disconnect(server, &s, false)); /* b */
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"b\",\"reason\":\"io server disconnect\"}", 5000);
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s", sids[1]);
    LOG_WAIT(needle, 3000);
    const char *own_d[] = {sids[3]};
    memset(&s, 0, sizeof s);
    s.rooms = own_d;
    s.room_count = 1;
    CHECK_OK(iobus_selection_disconnect(server, &s, true)); /* d's connection */
    PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"d\"", 5000);
    snprintf(needle, sizeof needle, "disconnect nsp=/ sid=%s", sids[3]);
    LOG_WAIT(needle, 3000);
    CHECK_ST(iobus_socket_emit(server, sids[1], "x", NULL, 0, NULL, 0), IOBUS_ERR_UNKNOWN_SOCKET);
    CHECK_OK(iobus_socket_emit(server, sids[0], "still", NULL, 0, NULL, 0));
    wait_event(p, "a", "\"still\"");
}

int main(void) {
    h_init(240);
    iobus_config *cfg = iobus_config_new();
    CHECK_OK(iobus_config_set_ping_interval(cfg, 2000));
    CHECK_OK(iobus_config_set_ping_timeout(cfg, 5000));
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);
    CHECK_OK(iobus_server_on_disconnect(server, NULL, on_disconnect, NULL));

    SECTION("before start: not running");
    iobus_selection all = {0};
    static acks early = {"early", 0, -1, 0, "", 0, ""};
    static h_answer early_json = {"early", 0, ""};
    CHECK_ST(iobus_selection_emit(server, &all, "e", NULL, 0, NULL, 0), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_selection_emit_with_ack(server, &all, "e", NULL, 0, NULL, 0, on_acks, &early), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_selection_fetch_sockets(server, &all, h_on_json, &early_json), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_namespace_all_rooms(server, NULL, h_on_json, &early_json), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_namespace_server_side_emit(server, NULL, "e", NULL, 0, NULL, 0), IOBUS_ERR_NOT_RUNNING);
    CHECK_ST(iobus_selection_disconnect(server, &all, false), IOBUS_ERR_NOT_RUNNING);

    CHECK_OK(iobus_server_start(server, NULL, 0));
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(server, &port));
    peer *p = peer_start(port);
    CHECK(p != NULL);
    if (p) {
        char sids[4][32];
        const char *names[] = {"a", "b", "c", "d"};
        for (int i = 0; i < 4; i++) {
            char extra[64];
            snprintf(extra, sizeof extra, "\"auth\":{\"who\":\"%s\"}", names[i]);
            CHECK(peer_connect(p, names[i], extra, sids[i], sizeof sids[i]));
        }
        CHECK_OK(iobus_socket_join(server, sids[0], "red"));
        CHECK_OK(iobus_socket_join(server, sids[1], "red"));
        CHECK_OK(iobus_socket_join(server, sids[1], "blue"));
        CHECK_OK(iobus_socket_join(server, sids[2], "blue"));

        test_bad_arguments(sids[0]);
        test_emit(p, sids);
        test_unknown_namespace(p);
        test_fetch_and_data(sids);
        test_join_leave_rooms(sids);
        test_server_side();
        test_emit_with_ack(p, sids); /* c leaves here */
        test_disconnect(p, sids);

        SECTION("free with completions pending: each called once, before free returns");
        static acks pending = {"pending at free", 0, -1, 0, "", 0, ""};
        static one_ack single = {"single at free", 0, -1};
        peer_reply(p, "a", "hold", "\"mode\":\"ignore\"");
        CHECK_OK(iobus_selection_emit_with_ack(server, &all, "hold", NULL, 0, NULL, 0, on_acks, &pending));
        CHECK_OK(iobus_socket_emit_with_ack(server, sids[0], "hold", NULL, 0, NULL, 0, 0, on_one_ack, &single));
        wait_event(p, "a", "\"hold\"");
        wait_event(p, "a", "\"hold\"");
        CHECK(pending.calls == 0 && single.calls == 0);
        iobus_server_free(server);
        server = NULL;
        CHECK(pending.calls == 1 && single.calls == 1);
        /* The recipient left (the server stopped): nothing more to wait for. */
        CHECK(pending.status == IOBUS_ACK_OK && pending.expected == 1 && strcmp(pending.replies, "[]") == 0);
        CHECK(single.status == IOBUS_ACK_DISCONNECTED);
        peer_stop(p);
    } else {
        iobus_server_free(server);
    }
    CHECK(early.calls == 0 && early_json.calls == 0);
    h_log_clear();
    return h_finish("test_selection");
}
