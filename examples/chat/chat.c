/*
 * The classic chat app as a C host of iobus: named users in rooms, typing
 * notices, direct messages, and the Socket.IO tutorial's `chat message`
 * broadcast. The same event contract as main.rs (the Rust host):
 *
 * | event          | arguments | effect                                              | ack                   |
 * | -------------- | --------- | --------------------------------------------------- | --------------------- |
 * | `join`         | name      | joins `lobby`; `join` {name, room, id} to the room  | {room, users, members}|
 * | `chat`         | {msg}     | `chat` {name, msg, room, ts, id} to the room        | {ok}                  |
 * | `switch room`  | room      | `leave` to the old room, `join` to the new one      | {room, users, members}|
 * | `typing`       | –         | `typing` {name} to the room, sender excluded        | –                     |
 * | `dm`           | {to, msg} | `dm` {from, fromId, msg, ts} to socket `to`         | {ok}                  |
 * | `leave`        | –         | `leave` {name, room, id} to the room, then disconnects | {ok}               |
 * | `chat message` | text      | `chat message` text to everyone                     | –                     |
 *
 * `users` is the sorted list of names in the room; `members` is [{id, name}]
 * in the same order. Bad input is answered with {ok: false, error} when an
 * ack was asked for, and ignored otherwise. A socket that disconnects
 * without `leave` still produces the `leave` notice.
 *
 * Connection state recovery is on (env CHAT_RECOVERY_MS, default 30000; 0
 * turns it off): a page whose connection drops keeps its user for that
 * long. Coming back in time, it gets its id, room and every message it
 * missed, and the others see nothing of the drop; a DM sent to it meanwhile
 * waits for it. Only when it stays away longer does the room get its
 * `leave` notice.
 *
 * Usage: chat [port]   (or env PORT; default 3000). Serves the page from env
 * CHAT_PUBLIC_DIR, else ./examples/chat/public, else the one in the source
 * tree; the socket.io-client bundle under /socket.io/ (env IOBUS_CLIENT_DIR
 * or ./node_modules/socket.io-client/dist). Stops on SIGINT or SIGTERM.
 *
 * Env CHAT_REDIS_URL (`redis://host:port[/db]`) makes it one node of a
 * cluster: the nodes on that Redis share one Redis stream (env
 * CHAT_REDIS_KEY names it; default `socket.io`), so room notices, chat and
 * DMs reach users on every node, rosters list them all (each socket's data
 * is its {name, room}), and a dropped page recovers on any node.
 *
 * Callbacks run on the main thread (IOBUS_DISPATCH_POLL), so the user table
 * needs no lock. Event arguments arrive as JSON text and leave as JSON text;
 * Jansson (libjansson-dev; link with -ljansson) reads and writes it.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "iobus.h"

#define LOBBY "lobby"
#define MAX_NAME 32
#define MAX_ROOM 40
#define MAX_MSG 2000
/* Chat rooms live under this prefix, apart from the per-socket rooms. */
#define ROOM_PREFIX "chat:"
/* How long a dropped page keeps its user, unless CHAT_RECOVERY_MS says. */
#define RECOVERY_MS 30000
/* How much later than the server's own recovery deadline a user that has
 * not come back is let go: by then no recovery of it can be under way. */
#define EXPIRY_GRACE_MS 1000

static iobus_server *server;
/* How long a dropped page keeps its user; 0: recovery is off. */
static uint64_t recovery_ms;

/* ---- JSON ----------------------------------------------------------------------- */

/* The event's arguments as a JSON array, or NULL; the caller json_decref()s
 * it. Strings may hold NUL characters (JSON_ALLOW_NUL), so their length is
 * json_string_length(), not strlen(); integers too large for json_int_t
 * load as reals instead of failing the whole array. */
static json_t *event_args(const iobus_event *ev) {
    size_t len = 0;
    const char *args = iobus_event_args(ev, &len);
    return args ? json_loadb(args, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL) : NULL;
}

/* `value` (a reference the call takes) as the JSON text of a one-element
 * argument array; malloc'd, or NULL when out of memory. */
static char *one_arg(json_t *value) {
    json_t *args = json_pack("[o]", value);
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    return text;
}

/* ---- text rules (as main.rs: trim, drop control characters, cap) ---------------- */

/* The code point at s (valid UTF-8) and its length in bytes. */
static size_t utf8_next(const char *s, size_t n, unsigned *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || n < 2) {
        *cp = u[0];
        return 1;
    }
    if (u[0] < 0xE0) {
        *cp = ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
        return 2;
    }
    if (u[0] < 0xF0 || n < 4) {
        if (n < 3) {
            *cp = 0xFFFD;
            return n;
        }
        *cp = ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
        return 3;
    }
    *cp = ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3Fu);
    return 4;
}

/* Unicode White_Space. */
static int is_space(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* Unicode general category Cc. */
static int is_control(unsigned cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

/* The bytes [*start, *end) of s without surrounding white space. */
static void trim(const char *s, size_t n, size_t *start, size_t *end) {
    size_t a = 0, b = n;
    while (a < n) {
        unsigned cp;
        size_t k = utf8_next(s + a, n - a, &cp);
        if (!is_space(cp)) break;
        a += k;
    }
    /* From the end: step back over continuation bytes to each code point. */
    while (b > a) {
        size_t k = b - 1;
        while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        unsigned cp;
        utf8_next(s + k, b - k, &cp);
        if (!is_space(cp)) break;
        b = k;
    }
    *start = a;
    *end = b;
}

/* Trimmed, control characters dropped, at most `max` characters, trimmed
 * again; malloc'd, or NULL when nothing is left. */
static char *clean(const char *s, size_t n, size_t max) {
    size_t a, b;
    trim(s, n, &a, &b);
    char *kept = malloc(b - a + 1);
    if (!kept) return NULL;
    size_t len = 0, chars = 0;
    for (size_t i = a; i < b && chars < max;) {
        unsigned cp;
        size_t k = utf8_next(s + i, b - i, &cp);
        if (!is_control(cp)) {
            memcpy(kept + len, s + i, k);
            len += k;
            chars++;
        }
        i += k;
    }
    trim(kept, len, &a, &b);
    if (a == b) {
        free(kept);
        return NULL;
    }
    memmove(kept, kept + a, b - a);
    kept[b - a] = '\0';
    return kept;
}

/* A non-empty cleaned string from a JSON string value, or NULL. */
static char *text_arg(const json_t *value, size_t max) {
    if (!json_is_string(value)) return NULL;
    return clean(json_string_value(value), json_string_length(value), max);
}

/* The message of a `chat` or `dm` payload ({msg}, or a bare string): its
 * first MAX_MSG characters, kept as they are, as a pointer into the JSON
 * value and a length in bytes in *len (it may hold NUL characters); NULL
 * when missing or blank. */
static const char *msg_arg(const json_t *value, size_t *len) {
    if (json_is_object(value)) value = json_object_get(value, "msg");
    if (!json_is_string(value)) return NULL;
    const char *s = json_string_value(value);
    size_t n = json_string_length(value), i = 0;
    for (size_t chars = 0; i < n && chars < MAX_MSG; chars++) {
        unsigned cp;
        i += utf8_next(s + i, n - i, &cp);
    }
    size_t a, b;
    trim(s, i, &a, &b);
    if (a == b) return NULL;
    *len = i;
    return s;
}

/* ---- users ---------------------------------------------------------------------- */

typedef struct user {
    char sid[32];
    char *name;
    char *room;
    /* When its connection dropped (monotonic ms) while it may still
     * recover; 0 while it is connected. */
    int64_t away_since;
    /* Away too long: the cluster is being asked whether another node has
     * its socket now. */
    int checking;
} user;

static user *users;
static size_t user_count, user_cap;

static user *find_user(const char *sid) {
    for (size_t i = 0; i < user_count; i++) {
        if (strcmp(users[i].sid, sid) == 0) return &users[i];
    }
    return NULL;
}

/* Removes a user (its strings go to the caller through `out`). */
static int take_user(const char *sid, user *out) {
    user *u = find_user(sid);
    if (!u) return 0;
    *out = *u;
    *u = users[--user_count];
    return 1;
}

static user *add_user(const char *sid) {
    if (user_count == user_cap) {
        size_t cap = user_cap ? user_cap * 2 : 16;
        user *bigger = realloc(users, cap * sizeof *users);
        if (!bigger) return NULL;
        users = bigger;
        user_cap = cap;
    }
    user *u = &users[user_count++];
    memset(u, 0, sizeof *u);
    snprintf(u->sid, sizeof u->sid, "%s", sid);
    return u;
}

static void free_users(void) {
    for (size_t i = 0; i < user_count; i++) {
        free(users[i].name);
        free(users[i].room);
    }
    free(users);
    users = NULL;
    user_count = user_cap = 0;
}

/* ---- sending -------------------------------------------------------------------- */

static json_int_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *room_key(const char *room) {
    size_t size = sizeof ROOM_PREFIX + strlen(room);
    char *key = malloc(size);
    if (key) snprintf(key, size, "%s%s", ROOM_PREFIX, room);
    return key;
}

/* Emits `event` with one JSON argument (a reference the call takes) to a
 * chat room, minus one socket. */
static void emit_to_room(const char *room, const char *except_sid, uint32_t flags, const char *event, json_t *arg) {
    char *key = room_key(room);
    char *args = one_arg(arg);
    const char *rooms[1] = {key};
    const char *except[1] = {except_sid};
    iobus_selection sel = {0};
    sel.rooms = rooms;
    sel.room_count = 1;
    sel.except_sids = except;
    sel.except_sid_count = except_sid ? 1 : 0;
    sel.flags = flags;
    if (key && args) {
        iobus_status st = iobus_selection_emit(server, &sel, event, args, strlen(args), NULL, 0);
        if (st != IOBUS_OK) fprintf(stderr, "chat: emit %s: %s\n", event, iobus_last_error());
    }
    free(args);
    free(key);
}

/* Answers an ack (if one was asked for) with one JSON value, a reference
 * the call takes. */
static void reply(iobus_ack *ack, json_t *value) {
    if (!ack) {
        json_decref(value);
        return;
    }
    char *args = one_arg(value);
    iobus_status st = args ? iobus_ack_send(ack, args, strlen(args), NULL, 0) : IOBUS_ERR_INVALID_ARGUMENT;
    /* Sent, or spent because the client left; otherwise it is still ours. */
    if (st != IOBUS_OK && st != IOBUS_ERR_DISCONNECTED) iobus_ack_free(ack);
    free(args);
}

static json_t *error_value(const char *message) { return json_pack("{s:b, s:s}", "ok", 0, "error", message); }

static void reply_error(iobus_ack *ack, const char *message) { reply(ack, error_value(message)); }

static void reply_ok(iobus_ack *ack, int ok) { reply(ack, json_pack("{s:b}", "ok", ok)); }

/* {name, room, id}: a join or leave notice. */
static json_t *notice(const char *sid, const char *name, const char *room) {
    return json_pack("{s:s, s:s, s:s}", "name", name, "room", room, "id", sid);
}

typedef struct member {
    const char *name;
    const char *sid;
} member;

static int member_order(const void *a, const void *b) {
    const member *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->sid, y->sid);
}

/* {room, users, members}: the users in the room on every node of the
 * cluster (`sockets`, the answer of iobus_selection_fetch_sockets: each
 * socket's data is its {name, room}), with this node's users whose
 * connection dropped a moment ago (the others still see them there). */
static json_t *roster(const char *room, const json_t *sockets) {
    size_t found = json_array_size(sockets);
    member *members = calloc(user_count + found + 1, sizeof *members);
    size_t count = 0, i, j;
    for (i = 0; members && i < found; i++) {
        const json_t *s = json_array_get(sockets, i);
        const json_t *data = json_object_get(s, "data");
        const json_t *id = json_object_get(s, "id"), *name = json_object_get(data, "name");
        const json_t *in = json_object_get(data, "room");
        if (!json_is_string(id) || !json_is_string(name) || !json_is_string(in)) continue;
        if (strcmp(json_string_value(in), room) != 0) continue;
        members[count].name = json_string_value(name);
        members[count].sid = json_string_value(id);
        count++;
    }
    for (i = 0; members && i < user_count; i++) {
        if (!users[i].away_since || strcmp(users[i].room, room) != 0) continue;
        for (j = 0; j < count && strcmp(members[j].sid, users[i].sid) != 0; j++) {
        }
        if (j < count) continue;
        members[count].name = users[i].name;
        members[count].sid = users[i].sid;
        count++;
    }
    if (count > 1) qsort(members, count, sizeof *members, member_order);
    json_t *names = json_array(), *people = json_array();
    for (i = 0; i < count; i++) {
        json_array_append_new(names, json_string(members[i].name));
        json_array_append_new(people, json_pack("{s:s, s:s}", "id", members[i].sid, "name", members[i].name));
    }
    free(members);
    return json_pack("{s:s, s:o, s:o}", "room", room, "users", names, "members", people);
}

/* An ack waiting for the answer of a fetch across the cluster. */
typedef struct pending {
    iobus_ack *ack;
    char *room;    /* a roster: its room */
    char *to;      /* a DM: its recipient */
    char *payload; /* a DM: its arguments */
} pending;

static void pending_free(pending *p) {
    free(p->room);
    free(p->to);
    free(p->payload);
    free(p);
}

static void on_roster(void *ud, const char *json, size_t len) {
    pending *p = ud;
    json_t *sockets = json_loadb(json, len, 0, NULL);
    reply(p->ack, roster(p->room, sockets));
    json_decref(sockets);
    pending_free(p);
}

/* Answers `ack` with the roster of `room` once every node has said who of
 * its sockets are in it. */
static void reply_roster(iobus_ack *ack, const char *room) {
    pending *p = calloc(1, sizeof *p);
    char *key = room_key(room);
    const char *rooms[1] = {key};
    iobus_selection sel = {0};
    sel.rooms = rooms;
    sel.room_count = 1;
    if (p) {
        p->ack = ack;
        p->room = strdup(room);
    }
    if (!p || !p->room || !key || iobus_selection_fetch_sockets(server, &sel, on_roster, p) != IOBUS_OK) {
        if (p) pending_free(p);
        reply(ack, error_value("cannot list the room"));
    }
    free(key);
}

/* Keeps {name, room} with the socket too: a recovered socket brings it back,
 * so that it always knows who it is. Whether the socket took it (a socket
 * that dropped takes it only while it may still recover). */
static int keep_identity(const user *u) {
    json_t *who = json_pack("{s:s, s:s}", "name", u->name, "room", u->room);
    char *text = who ? json_dumps(who, JSON_COMPACT) : NULL;
    int kept = text && iobus_socket_set_data(server, u->sid, text, SIZE_MAX) == IOBUS_OK;
    free(text);
    json_decref(who);
    return kept;
}

/* Puts a socket into `room` under `name` (leaving its current room, if
 * different), announces the move, and answers `ack` (if any) with the
 * roster. Takes ownership of name and room. */
static void enter(const char *sid, char *name, char *room, iobus_ack *ack) {
    user *u = find_user(sid);
    if (!u) u = add_user(sid);
    if (!u) {
        free(name);
        free(room);
        reply_error(ack, "out of memory");
        return;
    }
    if (u->room && strcmp(u->room, room) != 0) {
        char *old_key = room_key(u->room);
        if (old_key) iobus_socket_leave(server, sid, old_key);
        free(old_key);
        emit_to_room(u->room, NULL, 0, "leave", notice(sid, u->name, u->room));
    }
    free(u->name);
    free(u->room);
    u->name = name;
    u->room = room;
    u->away_since = 0;
    keep_identity(u);
    char *key = room_key(room);
    if (key) iobus_socket_join(server, sid, key);
    free(key);
    emit_to_room(room, NULL, 0, "join", notice(sid, name, room));
    if (ack) reply_roster(ack, room);
}

/* Removes a socket from the chat, telling its room; whether it had joined. */
static int depart(const char *sid) {
    user u;
    if (!take_user(sid, &u)) return 0;
    iobus_socket_set_data(server, u.sid, NULL, 0); /* fails quietly once the socket is gone */
    char *key = room_key(u.room);
    if (key) iobus_socket_leave(server, sid, key); /* fails quietly once the socket is gone */
    free(key);
    emit_to_room(u.room, NULL, 0, "leave", notice(sid, u.name, u.room));
    free(u.name);
    free(u.room);
    return 1;
}

/* ---- handlers ------------------------------------------------------------------- */

static void on_join(void *ud, const iobus_event *ev) {
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    json_t *args = event_args(ev);
    char *name = text_arg(json_array_get(args, 0), MAX_NAME);
    json_decref(args);
    if (!name) {
        reply_error(ack, "a name is required");
        return;
    }
    char *room = strdup(LOBBY);
    if (!room) {
        free(name);
        iobus_ack_free(ack);
        return;
    }
    enter(iobus_event_socket_id(ev), name, room, ack);
}

static void on_switch_room(void *ud, const iobus_event *ev) {
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    json_t *args = event_args(ev);
    char *room = text_arg(json_array_get(args, 0), MAX_ROOM);
    json_decref(args);
    if (!room) {
        reply_error(ack, "a room name is required");
        return;
    }
    const char *sid = iobus_event_socket_id(ev);
    user *u = find_user(sid);
    char *name = u ? strdup(u->name) : NULL;
    if (!name) {
        free(room);
        reply_error(ack, "join first");
        return;
    }
    enter(sid, name, room, ack);
}

static void on_chat(void *ud, const iobus_event *ev) {
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    const char *sid = iobus_event_socket_id(ev);
    user *u = find_user(sid);
    if (!u) {
        reply_error(ack, "join first");
        return;
    }
    json_t *args = event_args(ev);
    size_t len = 0;
    const char *msg = msg_arg(json_array_get(args, 0), &len);
    if (msg) {
        emit_to_room(u->room, NULL, 0, "chat",
                     json_pack("{s:s, s:s%, s:s, s:I, s:s}", "name", u->name, "msg", msg, len, "room", u->room, "ts",
                               now_ms(), "id", sid));
        reply_ok(ack, 1);
    } else {
        reply_error(ack, "a message is required");
    }
    json_decref(args);
}

static void on_typing(void *ud, const iobus_event *ev) {
    (void)ud;
    const char *sid = iobus_event_socket_id(ev);
    user *u = find_user(sid);
    if (u) emit_to_room(u->room, sid, IOBUS_SELECTION_VOLATILE, "typing", json_pack("{s:s}", "name", u->name));
}

static void on_dm_target(void *ud, const char *json, size_t len) {
    pending *p = ud;
    json_t *sockets = json_loadb(json, len, 0, NULL);
    if (json_array_size(sockets) > 0) {
        const char *own[1] = {p->to};
        iobus_selection sel = {0};
        sel.rooms = own;
        sel.room_count = 1;
        reply_ok(p->ack, iobus_selection_emit(server, &sel, "dm", p->payload, strlen(p->payload), NULL, 0) == IOBUS_OK);
    } else {
        reply_error(p->ack, "no such user");
    }
    json_decref(sockets);
    pending_free(p);
}

/* A DM to a socket that is not on this node: sent through its own room if
 * another node of the cluster has it. */
static void dm_elsewhere(iobus_ack *ack, const char *to, const char *dm) {
    pending *p = calloc(1, sizeof *p);
    if (p) {
        p->ack = ack;
        p->to = strdup(to);
        p->payload = strdup(dm);
    }
    const char *own[1] = {p ? p->to : NULL};
    iobus_selection sel = {0};
    sel.rooms = own;
    sel.room_count = 1;
    if (!p || !p->to || !p->payload || iobus_selection_fetch_sockets(server, &sel, on_dm_target, p) != IOBUS_OK) {
        if (p) pending_free(p);
        reply_error(ack, "no such user");
    }
}

static void on_dm(void *ud, const iobus_event *ev) {
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    const char *sid = iobus_event_socket_id(ev);
    user *u = find_user(sid);
    if (!u) {
        reply_error(ack, "join first");
        return;
    }
    json_t *args = event_args(ev);
    json_t *arg = json_array_get(args, 0);
    json_t *to = json_object_get(arg, "to");
    size_t len = 0;
    const char *msg = msg_arg(arg, &len);
    if (!json_is_string(to)) {
        reply_error(ack, "a recipient is required");
    } else if (!msg) {
        reply_error(ack, "a message is required");
    } else {
        char *dm = one_arg(json_pack("{s:s, s:s, s:s%, s:I}", "from", u->name, "fromId", sid, "msg", msg, len, "ts",
                                     now_ms()));
        /* An id with a NUL inside names nobody. */
        iobus_status st = IOBUS_ERR_UNKNOWN_SOCKET;
        const char *to_sid = json_string_value(to);
        if (dm && strlen(to_sid) == json_string_length(to)) {
            st = iobus_socket_emit(server, to_sid, "dm", dm, strlen(dm), NULL, 0);
            user *target = st == IOBUS_ERR_UNKNOWN_SOCKET ? find_user(to_sid) : NULL;
            if (target && target->away_since) {
                /* Away for a moment: its own room keeps the DM for its recovery. */
                const char *own[1] = {target->sid};
                iobus_selection to_own = {0};
                to_own.rooms = own;
                to_own.room_count = 1;
                st = iobus_selection_emit(server, &to_own, "dm", dm, strlen(dm), NULL, 0);
            }
        }
        if (st == IOBUS_ERR_UNKNOWN_SOCKET && dm && strlen(to_sid) == json_string_length(to)) {
            dm_elsewhere(ack, to_sid, dm); /* on another node of the cluster, or nowhere */
        } else if (st == IOBUS_ERR_UNKNOWN_SOCKET) {
            reply_error(ack, "no such user");
        } else {
            reply_ok(ack, st == IOBUS_OK);
        }
        free(dm);
    }
    json_decref(args);
}

static void on_leave(void *ud, const iobus_event *ev) {
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    const char *sid = iobus_event_socket_id(ev);
    int was_in = depart(sid);
    reply_ok(ack, was_in);
    iobus_socket_disconnect(server, sid, false);
}

/* Passes the arguments on as they came, binary attachments included. */
static void on_chat_message(void *ud, const iobus_event *ev) {
    (void)ud;
    size_t len = 0;
    const char *args = iobus_event_args(ev, &len);
    size_t n = iobus_event_binary_count(ev);
    iobus_buf *bufs = n ? calloc(n, sizeof *bufs) : NULL;
    if (n && !bufs) return;
    for (size_t i = 0; i < n; i++) bufs[i].data = iobus_event_binary(ev, i, &bufs[i].len);
    iobus_selection everyone = {0};
    if (iobus_selection_emit(server, &everyone, "chat message", args, len, bufs, n) != IOBUS_OK) {
        fprintf(stderr, "chat: chat message: %s\n", iobus_last_error());
    }
    free(bufs);
}

/* Every connection is accepted; the callback is here to hear of recoveries.
 * A recovered socket has its id, rooms and data back, so its user is simply
 * back, and nobody is told. A socket that dropped from another node of the
 * cluster and recovered here brings its user in its data {name, room}; that
 * node forgets it without a notice once it sees the socket here. (A user
 * that was let go cannot come back this way: it is let go only after its
 * recovery window, once no node has its socket.) */
static void on_connect(void *ud, iobus_connect *req) {
    (void)ud;
    char sid[sizeof users[0].sid];
    snprintf(sid, sizeof sid, "%s", iobus_connect_socket_id(req));
    int recovered = iobus_connect_recovered(req);
    if (iobus_connect_accept(req) != IOBUS_OK || !recovered) return;
    user *u = find_user(sid);
    if (u) {
        u->away_since = 0;
        return;
    }
    char *data = NULL;
    size_t len = 0;
    json_t *who = NULL;
    if (iobus_socket_data(server, sid, &data, &len) == IOBUS_OK) who = json_loadb(data, len, 0, NULL);
    iobus_string_free(data);
    char *name = text_arg(json_object_get(who, "name"), MAX_NAME);
    char *room = text_arg(json_object_get(who, "room"), MAX_ROOM);
    json_decref(who);
    u = name && room ? add_user(sid) : NULL;
    if (u) {
        u->name = name;
        u->room = room;
    } else {
        free(name);
        free(room);
    }
}

static void on_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    (void)ud;
    (void)nsp;
    (void)reason;
    (void)rooms;
    user *u = find_user(sid);
    /* Kept for a recovery (the socket takes its data only then, or when it
     * is back already): the user waits for it, away. */
    if (u && recovery_ms && keep_identity(u)) {
        u->away_since = monotonic_ms();
        return;
    }
    depart(sid);
}

/* The answer to "which node has this socket now?" for a user away too long:
 * nobody (it is let go, and its room hears that it left), or another node,
 * where it recovered (this node forgets it quietly: that node has it now). */
static void on_expiry_check(void *ud, const char *json, size_t len) {
    char *sid = ud;
    user *u = find_user(sid);
    if (u && u->checking) {
        u->checking = 0;
        json_t *sockets = json_loadb(json, len, 0, NULL);
        if (!u->away_since) {
            /* back on this node meanwhile */
        } else if (json_array_size(sockets) > 0) {
            user gone;
            take_user(sid, &gone);
            free(gone.name);
            free(gone.room);
        } else {
            depart(sid);
        }
        json_decref(sockets);
    }
    free(sid);
}

/* Lets go of the users that have been away longer than a recovery can
 * take, unless their socket is back: on this node, or on another node of
 * the cluster (asked through the socket's own room). */
static void expire_users(void) {
    int64_t now = monotonic_ms();
    for (size_t i = 0; i < user_count;) {
        user *u = &users[i];
        if (!u->away_since || u->checking || now - u->away_since < (int64_t)(recovery_ms + EXPIRY_GRACE_MS)) {
            i++;
            continue;
        }
        /* Back after all (its connect callback is still to come)? */
        char *rooms = NULL;
        int back = iobus_socket_rooms(server, u->sid, &rooms, NULL) == IOBUS_OK;
        iobus_string_free(rooms);
        if (back) {
            u->away_since = 0;
            i++;
            continue;
        }
        char *sid = strdup(u->sid);
        const char *own[1] = {sid};
        iobus_selection sel = {0};
        sel.rooms = own;
        sel.room_count = 1;
        if (sid && iobus_selection_fetch_sockets(server, &sel, on_expiry_check, sid) == IOBUS_OK) {
            u->checking = 1;
            i++;
        } else {
            free(sid);
            char gone[sizeof u->sid];
            memcpy(gone, u->sid, sizeof gone);
            depart(gone); /* moves the last user into slot i */
        }
    }
}

/* ---- main ----------------------------------------------------------------------- */

static volatile sig_atomic_t stopping;
static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    int saved = errno;
    (void)sig;
    stopping = 1;
    if (wake_pipe[1] >= 0) {
        ssize_t ignored = write(wake_pipe[1], "x", 1);
        (void)ignored;
    }
    errno = saved;
}

/* argv[1], else env PORT, as a port number; 3000 when absent or invalid. */
static uint16_t parse_port(int argc, char **argv) {
    const char *s = argc > 1 ? argv[1] : getenv("PORT");
    if (!s) return 3000;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    if (*s == '+') s++;
    unsigned long v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535) return 3000;
        p++;
    }
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (p == s || *p != '\0') return 3000;
    return (uint16_t)v;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *public_dir(void) {
    const char *env = getenv("CHAT_PUBLIC_DIR");
    if (env && *env) return env;
    if (is_file("examples/chat/public/index.html")) return "examples/chat/public";
#ifdef CHAT_SOURCE_DIR
    return CHAT_SOURCE_DIR "/public";
#else
    return "examples/chat/public";
#endif
}

/* CHAT_RECOVERY_MS as milliseconds (0: off); RECOVERY_MS when absent or
 * invalid. */
static uint64_t parse_recovery_ms(void) {
    const char *s = getenv("CHAT_RECOVERY_MS");
    if (!s || !*s) return RECOVERY_MS;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0' || v > 86400000ULL) return RECOVERY_MS;
    return (uint64_t)v;
}

static int check(iobus_status st, const char *what) {
    if (st != IOBUS_OK) fprintf(stderr, "chat: %s: %s (%s)\n", what, iobus_status_str(st), iobus_last_error());
    return st == IOBUS_OK;
}

int main(int argc, char **argv) {
    uint16_t port = parse_port(argc, argv);
    recovery_ms = parse_recovery_ms();

    if (pipe(wake_pipe) != 0) {
        perror("chat: pipe");
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(wake_pipe[i], F_SETFL, fcntl(wake_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* A node of a cluster: the other nodes share its rooms, DMs and
     * recovery through a Redis stream. */
    const char *redis_url = getenv("CHAT_REDIS_URL");
    const char *redis_key = getenv("CHAT_REDIS_KEY");
    if (redis_url && !*redis_url) redis_url = NULL;
    if (redis_key && !*redis_key) redis_key = NULL;
    iobus_config *cfg = iobus_config_new();
    int ok = cfg && check(iobus_config_set_static_dir(cfg, public_dir()), "static dir") &&
             check(iobus_config_set_dispatch(cfg, IOBUS_DISPATCH_POLL), "dispatch") &&
             check(iobus_config_set_connection_state_recovery(cfg, recovery_ms > 0, recovery_ms, true, 0), "recovery") &&
             (!redis_url || check(iobus_config_set_redis(cfg, redis_url, redis_key, IOBUS_REDIS_STREAMS, 0), "redis")) &&
             check(iobus_server_new(cfg, &server), "new server");
    iobus_config_free(cfg);
    ok = ok && check(iobus_server_on_event(server, "/", "join", on_join, NULL), "on join") &&
         check(iobus_server_on_event(server, "/", "switch room", on_switch_room, NULL), "on switch room") &&
         check(iobus_server_on_event(server, "/", "chat", on_chat, NULL), "on chat") &&
         check(iobus_server_on_event(server, "/", "typing", on_typing, NULL), "on typing") &&
         check(iobus_server_on_event(server, "/", "dm", on_dm, NULL), "on dm") &&
         check(iobus_server_on_event(server, "/", "leave", on_leave, NULL), "on leave") &&
         check(iobus_server_on_event(server, "/", "chat message", on_chat_message, NULL), "on chat message") &&
         check(iobus_server_on_connect(server, "/", on_connect, NULL), "on connect") &&
         check(iobus_server_on_disconnect(server, "/", on_disconnect, NULL), "on disconnect");
    if (ok && iobus_server_start(server, "127.0.0.1", port) != IOBUS_OK) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%u: %s\n", (unsigned)port, iobus_last_error());
        ok = 0;
    }
    uint16_t bound = port;
    if (ok && check(iobus_server_port(server, &bound), "port")) {
        printf("chat server on http://127.0.0.1:%u\n", (unsigned)bound);
        fflush(stdout);
    }

    int fd = ok ? iobus_server_poll_fd(server) : -1;
    while (ok && !stopping) {
        struct pollfd fds[2];
        fds[0].fd = fd;
        fds[0].events = POLLIN;
        fds[0].revents = 0;
        fds[1].fd = wake_pipe[0];
        fds[1].events = POLLIN;
        fds[1].revents = 0;
        if (poll(fds, 2, 250) < 0 && errno != EINTR) {
            perror("chat: poll");
            break;
        }
        /* Never blocks; also runs anything whose wake-up the timeout stands in for. */
        size_t ran;
        do {
            ran = 0;
            if (iobus_server_poll(server, 256, &ran) != IOBUS_OK) break;
        } while (ran == 256 && !stopping);
        if (recovery_ms) expire_users();
    }

    if (server) {
        iobus_server_stop(server);
        iobus_server_free(server);
        server = NULL;
    }
    free_users();
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    return ok ? 0 : 1;
}
