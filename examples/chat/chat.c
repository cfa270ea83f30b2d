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
 * Usage: chat [port]   (or env PORT; default 3000). Serves the page from env
 * CHAT_PUBLIC_DIR, else ./examples/chat/public, else the one in the source
 * tree; the socket.io-client bundle under /socket.io/ (env IOBUS_CLIENT_DIR
 * or ./node_modules/socket.io-client/dist). Stops on SIGINT or SIGTERM.
 *
 * Callbacks run on the main thread (IOBUS_DISPATCH_POLL), so the user table
 * needs no lock. JSON is read and written by the small helpers below.
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

#include "iobus.h"

#define LOBBY "lobby"
#define MAX_NAME 32
#define MAX_ROOM 40
#define MAX_MSG 2000
/* Chat rooms live under this prefix, apart from the per-socket rooms. */
#define ROOM_PREFIX "chat:"

static iobus_server *server;

/* ---- growable text ------------------------------------------------------------ */

typedef struct text {
    char *data;
    size_t len;
    size_t cap;
    int failed; /* out of memory: the text is unusable */
} text;

static void text_add(text *t, const char *s, size_t n) {
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->len + n + 1) cap *= 2;
        char *bigger = realloc(t->data, cap);
        if (!bigger) {
            t->failed = 1;
            return;
        }
        t->data = bigger;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void text_adds(text *t, const char *s) { text_add(t, s, strlen(s)); }

static void text_add_u64(text *t, uint64_t v) {
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    text_add(t, buf, (size_t)n);
}

/* A JSON string literal for `n` bytes of UTF-8. */
static void text_add_json_string(text *t, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    text_add(t, "\"", 1);
    size_t run = 0; /* bytes copied as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                u[0] = '\\';
                u[1] = 'u';
                u[2] = '0';
                u[3] = '0';
                u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
                u[6] = '\0';
                esc = u;
            }
        }
        if (esc) {
            text_add(t, s + i - run, run);
            run = 0;
            text_adds(t, esc);
        } else {
            run++;
        }
    }
    text_add(t, s + n - run, run);
    text_add(t, "\"", 1);
}

static void text_add_json_cstring(text *t, const char *s) { text_add_json_string(t, s, strlen(s)); }

/* ---- reading JSON --------------------------------------------------------------- */
/* The texts come from iobus_event_args, so they are valid JSON; the readers
 * still check every bound and give up (NULL) on anything unexpected. */

static const char *json_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Past the string literal starting at p (which is at '"'), or NULL. */
static const char *json_skip_string(const char *p, const char *end) {
    if (p >= end || *p != '"') return NULL;
    for (p++; p < end; p++) {
        if (*p == '\\') {
            p++;
            if (p >= end) return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* Past the value starting at p, or NULL. */
static const char *json_skip(const char *p, const char *end) {
    p = json_ws(p, end);
    if (p >= end) return NULL;
    if (*p == '"') return json_skip_string(p, end);
    if (*p == '[' || *p == '{') {
        size_t depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = json_skip_string(p, end);
                if (!p) return NULL;
                continue;
            }
            if (*p == '[' || *p == '{') depth++;
            if (*p == ']' || *p == '}') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return NULL;
    }
    /* A number or a literal. */
    const char *start = p;
    while (p < end && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') p++;
    return p > start ? p : NULL;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int json_hex4(const char *p, const char *end, unsigned *out) {
    if (end - p < 4) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p[i]);
        if (d < 0) return 0;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 1;
}

static void text_add_utf8(text *t, unsigned cp) {
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    text_add(t, b, n);
}

/* Decodes the string value at p into `out` (malloc'd UTF-8, NUL-terminated;
 * a lone surrogate becomes U+FFFD). Returns the end of the literal, or NULL
 * when the value is not a string. */
static const char *json_string(const char *p, const char *end, text *out) {
    p = json_ws(p, end);
    if (p >= end || *p != '"') return NULL;
    text_add(out, "", 0);
    for (p++; p < end; p++) {
        if (*p == '"') return out->failed ? NULL : p + 1;
        if (*p != '\\') {
            const char *run = p;
            while (p < end && *p != '"' && *p != '\\') p++;
            text_add(out, run, (size_t)(p - run));
            p--;
            continue;
        }
        if (++p >= end) return NULL;
        switch (*p) {
        case '"': text_add(out, "\"", 1); break;
        case '\\': text_add(out, "\\", 1); break;
        case '/': text_add(out, "/", 1); break;
        case 'b': text_add(out, "\b", 1); break;
        case 'f': text_add(out, "\f", 1); break;
        case 'n': text_add(out, "\n", 1); break;
        case 'r': text_add(out, "\r", 1); break;
        case 't': text_add(out, "\t", 1); break;
        case 'u': {
            unsigned cp;
            if (!json_hex4(p + 1, end, &cp)) return NULL;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (end - p >= 7 && p[1] == '\\' && p[2] == 'u' && json_hex4(p + 3, end, &lo) && lo >= 0xDC00 &&
                    lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                } else {
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            text_add_utf8(out, cp);
            break;
        }
        default: return NULL;
        }
    }
    return NULL;
}

/* The first element of the array at p, or NULL when empty or not an array. */
static const char *json_first(const char *p, const char *end) {
    p = json_ws(p, end);
    if (p >= end || *p != '[') return NULL;
    p = json_ws(p + 1, end);
    return p < end && *p != ']' ? p : NULL;
}

/* The value of member `key` of the object at p, or NULL. */
static const char *json_member(const char *p, const char *end, const char *key) {
    p = json_ws(p, end);
    if (p >= end || *p != '{') return NULL;
    p = json_ws(p + 1, end);
    while (p < end && *p == '"') {
        text name = {0};
        const char *after = json_string(p, end, &name);
        int match = after && !name.failed && name.len == strlen(key) && memcmp(name.data, key, name.len) == 0;
        free(name.data);
        if (!after) return NULL;
        p = json_ws(after, end);
        if (p >= end || *p != ':') return NULL;
        p = json_ws(p + 1, end);
        if (match) return p;
        p = json_skip(p, end);
        if (!p) return NULL;
        p = json_ws(p, end);
        if (p < end && *p == ',') p = json_ws(p + 1, end);
    }
    return NULL;
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
    text kept = {0};
    size_t chars = 0;
    text_add(&kept, "", 0);
    for (size_t i = a; i < b && chars < max;) {
        unsigned cp;
        size_t k = utf8_next(s + i, b - i, &cp);
        if (!is_control(cp)) {
            text_add(&kept, s + i, k);
            chars++;
        }
        i += k;
    }
    if (kept.failed) {
        free(kept.data);
        return NULL;
    }
    trim(kept.data, kept.len, &a, &b);
    if (a == b) {
        free(kept.data);
        return NULL;
    }
    memmove(kept.data, kept.data + a, b - a);
    kept.data[b - a] = '\0';
    return kept.data;
}

/* A non-empty cleaned string from the JSON value at p, or NULL. */
static char *text_arg(const char *p, const char *end, size_t max) {
    if (!p) return NULL;
    text raw = {0};
    char *out = NULL;
    if (json_string(p, end, &raw) && !raw.failed) out = clean(raw.data, raw.len, max);
    free(raw.data);
    return out;
}

/* The message of a `chat` or `dm` payload: {msg}, or a bare string, capped
 * at MAX_MSG characters and not blank; malloc'd (its length in bytes in
 * *len: it may hold NUL characters), or NULL. */
static char *msg_arg(const char *p, const char *end, size_t *len) {
    if (!p) return NULL;
    p = json_ws(p, end);
    if (p < end && *p == '{') p = json_member(p, end, "msg");
    if (!p) return NULL;
    text raw = {0};
    if (!json_string(p, end, &raw) || raw.failed) {
        free(raw.data);
        return NULL;
    }
    size_t i = 0, chars = 0;
    while (i < raw.len && chars < MAX_MSG) {
        unsigned cp;
        i += utf8_next(raw.data + i, raw.len - i, &cp);
        chars++;
    }
    raw.data[i] = '\0';
    size_t a, b;
    trim(raw.data, i, &a, &b);
    if (a == b) {
        free(raw.data);
        return NULL;
    }
    *len = i;
    return raw.data;
}

/* ---- users ---------------------------------------------------------------------- */

typedef struct user {
    char sid[32];
    char *name;
    char *room;
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

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *room_key(const char *room) {
    text t = {0};
    text_adds(&t, ROOM_PREFIX);
    text_adds(&t, room);
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    return t.data;
}

/* Emits `event` with one JSON argument to a chat room (minus one socket). */
static void emit_to_room(const char *room, const char *except_sid, uint32_t flags, const char *event, const text *arg) {
    char *key = room_key(room);
    if (!key || arg->failed) {
        free(key);
        return;
    }
    text args = {0};
    text_add(&args, "[", 1);
    text_add(&args, arg->data, arg->len);
    text_add(&args, "]", 1);
    const char *rooms[1] = {key};
    if (!args.failed) {
        iobus_status st =
            iobus_namespace_emit(server, "/", rooms, 1, NULL, 0, except_sid, flags, event, args.data, args.len, NULL, 0);
        if (st != IOBUS_OK) fprintf(stderr, "chat: emit %s: %s\n", event, iobus_last_error());
    }
    free(args.data);
    free(key);
}

/* Answers an ack (if one was asked for) with one JSON value. */
static void reply(iobus_ack *ack, const text *value) {
    if (!ack) return;
    if (value->failed) {
        iobus_ack_free(ack);
        return;
    }
    text args = {0};
    text_add(&args, "[", 1);
    text_add(&args, value->data, value->len);
    text_add(&args, "]", 1);
    iobus_status st = args.failed ? IOBUS_ERR_INVALID_ARGUMENT : iobus_ack_send(ack, args.data, args.len, NULL, 0);
    /* Sent, or spent because the client left; otherwise it is still ours. */
    if (st != IOBUS_OK && st != IOBUS_ERR_DISCONNECTED) iobus_ack_free(ack);
    free(args.data);
}

static void reply_error(iobus_ack *ack, const char *message) {
    text v = {0};
    text_adds(&v, "{\"ok\":false,\"error\":");
    text_add_json_cstring(&v, message);
    text_adds(&v, "}");
    reply(ack, &v);
    free(v.data);
}

static void reply_ok(iobus_ack *ack, int ok) {
    text v = {0};
    text_adds(&v, ok ? "{\"ok\":true}" : "{\"ok\":false}");
    reply(ack, &v);
    free(v.data);
}

/* {"name", "room", "id"}: a join or leave notice. */
static void notice(text *t, const char *sid, const char *name, const char *room) {
    text_adds(t, "{\"name\":");
    text_add_json_cstring(t, name);
    text_adds(t, ",\"room\":");
    text_add_json_cstring(t, room);
    text_adds(t, ",\"id\":");
    text_add_json_cstring(t, sid);
    text_adds(t, "}");
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

/* {room, users, members}: the joined sockets the server has in the room. */
static void roster(text *out, const char *room) {
    char *key = room_key(room);
    char *ids = NULL;
    size_t ids_len = 0;
    member *members = NULL;
    size_t count = 0;
    const char *rooms[1] = {key};
    if (key && iobus_namespace_fetch_sockets(server, "/", rooms, 1, &ids, &ids_len) == IOBUS_OK) {
        const char *end = ids + ids_len;
        members = calloc(user_count + 1, sizeof *members);
        for (const char *p = json_first(ids, end); members && p && p < end;) {
            text sid = {0};
            const char *after = json_string(p, end, &sid);
            user *u = after && !sid.failed ? find_user(sid.data) : NULL;
            if (u && count < user_count) {
                members[count].name = u->name;
                members[count].sid = u->sid;
                count++;
            }
            free(sid.data);
            if (!after) break;
            p = json_ws(after, end);
            if (p < end && *p == ',') p++;
            else break;
        }
    }
    if (count > 1) qsort(members, count, sizeof *members, member_order);
    text_adds(out, "{\"room\":");
    text_add_json_cstring(out, room);
    text_adds(out, ",\"users\":[");
    for (size_t i = 0; i < count; i++) {
        if (i) text_add(out, ",", 1);
        text_add_json_cstring(out, members[i].name);
    }
    text_adds(out, "],\"members\":[");
    for (size_t i = 0; i < count; i++) {
        if (i) text_add(out, ",", 1);
        text_adds(out, "{\"id\":");
        text_add_json_cstring(out, members[i].sid);
        text_adds(out, ",\"name\":");
        text_add_json_cstring(out, members[i].name);
        text_adds(out, "}");
    }
    text_adds(out, "]}");
    free(members);
    iobus_string_free(ids);
    free(key);
}

/* Puts a socket into `room` under `name` (leaving its current room, if
 * different), announces the move, and writes the roster to `out`. Takes
 * ownership of name and room. */
static void enter(const char *sid, char *name, char *room, text *out) {
    user *u = find_user(sid);
    if (!u) u = add_user(sid);
    if (!u) {
        free(name);
        free(room);
        text_adds(out, "{\"ok\":false,\"error\":\"out of memory\"}");
        return;
    }
    if (u->room && strcmp(u->room, room) != 0) {
        char *old_key = room_key(u->room);
        if (old_key) iobus_socket_leave(server, sid, old_key);
        free(old_key);
        text n = {0};
        notice(&n, sid, u->name, u->room);
        emit_to_room(u->room, NULL, 0, "leave", &n);
        free(n.data);
    }
    free(u->name);
    free(u->room);
    u->name = name;
    u->room = room;
    char *key = room_key(room);
    if (key) iobus_socket_join(server, sid, key);
    free(key);
    text n = {0};
    notice(&n, sid, name, room);
    emit_to_room(room, NULL, 0, "join", &n);
    free(n.data);
    roster(out, room);
}

/* Removes a socket from the chat, telling its room; whether it had joined. */
static int depart(const char *sid) {
    user u;
    if (!take_user(sid, &u)) return 0;
    char *key = room_key(u.room);
    if (key) iobus_socket_leave(server, sid, key); /* fails quietly once the socket is gone */
    free(key);
    text n = {0};
    notice(&n, sid, u.name, u.room);
    emit_to_room(u.room, NULL, 0, "leave", &n);
    free(n.data);
    free(u.name);
    free(u.room);
    return 1;
}

/* ---- handlers ------------------------------------------------------------------- */

/* The first argument of an event: [p, end), p NULL when there is none. */
typedef struct first_arg {
    const char *p;
    const char *end;
} first_arg;

static first_arg first(const iobus_event *ev) {
    size_t len = 0;
    const char *args = iobus_event_args(ev, &len);
    first_arg a = {NULL, NULL};
    if (args) {
        a.end = args + len;
        a.p = json_first(args, a.end);
    }
    return a;
}

static void on_join(void *ud, const iobus_event *ev) {
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    first_arg a = first(ev);
    char *name = text_arg(a.p, a.end, MAX_NAME);
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
    text out = {0};
    enter(iobus_event_socket_id(ev), name, room, &out);
    reply(ack, &out);
    free(out.data);
}

static void on_switch_room(void *ud, const iobus_event *ev) {
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    first_arg a = first(ev);
    char *room = text_arg(a.p, a.end, MAX_ROOM);
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
    text out = {0};
    enter(sid, name, room, &out);
    reply(ack, &out);
    free(out.data);
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
    first_arg a = first(ev);
    size_t msg_len = 0;
    char *msg = msg_arg(a.p, a.end, &msg_len);
    if (!msg) {
        reply_error(ack, "a message is required");
        return;
    }
    text m = {0};
    text_adds(&m, "{\"name\":");
    text_add_json_cstring(&m, u->name);
    text_adds(&m, ",\"msg\":");
    text_add_json_string(&m, msg, msg_len);
    text_adds(&m, ",\"room\":");
    text_add_json_cstring(&m, u->room);
    text_adds(&m, ",\"ts\":");
    text_add_u64(&m, now_ms());
    text_adds(&m, ",\"id\":");
    text_add_json_cstring(&m, sid);
    text_adds(&m, "}");
    emit_to_room(u->room, NULL, 0, "chat", &m);
    free(m.data);
    free(msg);
    reply_ok(ack, 1);
}

static void on_typing(void *ud, const iobus_event *ev) {
    (void)ud;
    const char *sid = iobus_event_socket_id(ev);
    user *u = find_user(sid);
    if (!u) return;
    text t = {0};
    text_adds(&t, "{\"name\":");
    text_add_json_cstring(&t, u->name);
    text_adds(&t, "}");
    emit_to_room(u->room, sid, IOBUS_EMIT_VOLATILE, "typing", &t);
    free(t.data);
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
    first_arg a = first(ev);
    const char *to_value = a.p ? json_member(a.p, a.end, "to") : NULL;
    text to = {0};
    if (!to_value || !json_string(to_value, a.end, &to) || to.failed) {
        free(to.data);
        reply_error(ack, "a recipient is required");
        return;
    }
    size_t msg_len = 0;
    char *msg = msg_arg(a.p, a.end, &msg_len);
    if (!msg) {
        free(to.data);
        reply_error(ack, "a message is required");
        return;
    }
    text dm = {0};
    text_adds(&dm, "[{\"from\":");
    text_add_json_cstring(&dm, u->name);
    text_adds(&dm, ",\"fromId\":");
    text_add_json_cstring(&dm, sid);
    text_adds(&dm, ",\"msg\":");
    text_add_json_string(&dm, msg, msg_len);
    text_adds(&dm, ",\"ts\":");
    text_add_u64(&dm, now_ms());
    text_adds(&dm, "}]");
    /* An id with a NUL inside names nobody. */
    iobus_status st = IOBUS_ERR_UNKNOWN_SOCKET;
    if (strlen(to.data) == to.len && !dm.failed) st = iobus_socket_emit(server, to.data, "dm", dm.data, dm.len, NULL, 0);
    if (st == IOBUS_ERR_UNKNOWN_SOCKET) reply_error(ack, "no such user");
    else reply_ok(ack, st == IOBUS_OK);
    free(dm.data);
    free(msg);
    free(to.data);
}

static void on_leave(void *ud, const iobus_event *ev) {
    (void)ud;
    iobus_ack *ack = iobus_event_take_ack(ev);
    const char *sid = iobus_event_socket_id(ev);
    int was_in = depart(sid);
    reply_ok(ack, was_in);
    iobus_socket_disconnect(server, sid, false);
}

static void on_chat_message(void *ud, const iobus_event *ev) {
    (void)ud;
    size_t len = 0;
    const char *args = iobus_event_args(ev, &len);
    size_t n = iobus_event_binary_count(ev);
    iobus_buf *bufs = n ? calloc(n, sizeof *bufs) : NULL;
    if (n && !bufs) return;
    for (size_t i = 0; i < n; i++) bufs[i].data = iobus_event_binary(ev, i, &bufs[i].len);
    if (iobus_namespace_emit(server, "/", NULL, 0, NULL, 0, NULL, 0, "chat message", args, len, bufs, n) != IOBUS_OK) {
        fprintf(stderr, "chat: chat message: %s\n", iobus_last_error());
    }
    free(bufs);
}

static void on_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    (void)ud;
    (void)nsp;
    (void)reason;
    (void)rooms;
    depart(sid);
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

static int check(iobus_status st, const char *what) {
    if (st != IOBUS_OK) fprintf(stderr, "chat: %s: %s (%s)\n", what, iobus_status_str(st), iobus_last_error());
    return st == IOBUS_OK;
}

int main(int argc, char **argv) {
    uint16_t port = parse_port(argc, argv);

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

    iobus_config *cfg = iobus_config_new();
    int ok = cfg && check(iobus_config_set_static_dir(cfg, public_dir()), "static dir") &&
             check(iobus_config_set_dispatch(cfg, IOBUS_DISPATCH_POLL), "dispatch") &&
             check(iobus_server_new(cfg, &server), "new server");
    iobus_config_free(cfg);
    ok = ok && check(iobus_server_on_event(server, "/", "join", on_join, NULL), "on join") &&
         check(iobus_server_on_event(server, "/", "switch room", on_switch_room, NULL), "on switch room") &&
         check(iobus_server_on_event(server, "/", "chat", on_chat, NULL), "on chat") &&
         check(iobus_server_on_event(server, "/", "typing", on_typing, NULL), "on typing") &&
         check(iobus_server_on_event(server, "/", "dm", on_dm, NULL), "on dm") &&
         check(iobus_server_on_event(server, "/", "leave", on_leave, NULL), "on leave") &&
         check(iobus_server_on_event(server, "/", "chat message", on_chat_message, NULL), "on chat message") &&
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
