/*
 * The test harness of the C test programs: checks that count and report,
 * a record of what callbacks saw, the socket.io-client peers driven through
 * tests/c/peer.js, raw HTTP requests, and waits that always end.
 *
 * Env: IOBUS_PEER_JS (the driver script), IOBUS_NODE (the node binary),
 * IOBUS_TEST_TIME_SCALE (multiplies every timeout; the runner raises it
 * under Valgrind).
 */
#ifndef IOBUS_TEST_HARNESS_H
#define IOBUS_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "iobus.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- checks: each counts; a failure prints where and why ---- */

extern int h_checks;
extern int h_failures;
extern const char *h_section;

#define SECTION(name) (h_section = (name), printf("# %s\n", h_section), fflush(stdout))
#define CHECK(cond) h_check((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
#define CHECK_ST(expr, want) h_check_status((int)(expr), (int)(want), #expr, __FILE__, __LINE__)
#define CHECK_OK(expr) CHECK_ST(expr, IOBUS_OK)
#define CHECK_STR(a, b) h_check_str((a), (b), #a, __FILE__, __LINE__)
#define CHECK_HAS(hay, needle) h_check_has((hay), (needle), #hay, __FILE__, __LINE__)

/* A check of documented behaviour that the library does not have yet (each
 * use names the report): the documented status passes, and so does the
 * current one, with a note on stderr. */
#define KNOWN_GAP_ST(expr, documented, current) \
    h_known_gap((int)(expr), (int)(documented), (int)(current), #expr, __FILE__, __LINE__)
int h_known_gap(int got, int documented, int current, const char *what, const char *file, int line);
/* The same for a condition: passes when true; when false, a note (a failure when strict). */
#define KNOWN_GAP(cond, note) h_known_gap_if((cond) ? 1 : 0, (note), __FILE__, __LINE__)
int h_known_gap_if(int ok, const char *note, const char *file, int line);

int h_check(int ok, const char *what, const char *file, int line);
int h_check_status(int got, int want, const char *what, const char *file, int line);
int h_check_str(const char *a, const char *b, const char *what, const char *file, int line);
int h_check_has(const char *hay, const char *needle, const char *what, const char *file, int line);

/* Prints the closing line "<program>: N passed, N failed"; the exit code. */
int h_finish(const char *program);

/* ---- time ---- */

/* Reads the env, ignores SIGPIPE, and bounds the whole program with alarm(). */
void h_init(unsigned overall_seconds);
/* A timeout in milliseconds, scaled for slow runs (Valgrind). */
int T(int ms);
int64_t h_now_ms(void);
void h_sleep_ms(int ms);

/* ---- the server pump: in poll mode, waits run the callbacks of this server ---- */

extern iobus_server *h_pump_server;
extern int h_pump_calls;
/* Waits up to `timeout_ms` for the poll descriptor, then runs what is pending. */
void h_pump_once(int timeout_ms);
/* Runs pending callbacks: when `readable`, or now and then anyway to catch
 * lost wake-ups (counted in h_lost_wakeups, a failure when strict). */
size_t h_poll_server(iobus_server *server, int readable);
extern int h_lost_wakeups;
/* IOBUS_TEST_STRICT=0: known gaps are reported, not failed. */
extern int h_strict;

/* ---- the record of what callbacks saw (thread-safe) ---- */

void h_log_add(const char *fmt, ...);
/* Index of the first unconsumed record holding `needle` (now consumed), or -1. */
int h_log_take(const char *needle);
/* How many records hold `needle`. */
int h_log_count(const char *needle);
/* A copy of record i (free it), or NULL. */
char *h_log_get(int i);
void h_log_clear(void);
/* Waits for a record with `needle` (pumping); its index, or -1 (a failure). */
#define LOG_WAIT(needle, ms) h_log_wait((needle), (ms), __FILE__, __LINE__)
int h_log_wait(const char *needle, int ms, const char *file, int line);
/* Reads the peer / pumps / sleeps for `ms` (scaled). */
void h_settle(int ms);
void h_idle(int ms);

/* ---- answers to queries (iobus_json_cb) ---- */

typedef struct h_answer {
    const char *name; /* unique: the record below is waited for by name */
    int calls;
    char json[16384];
} h_answer;
/* An iobus_json_cb whose user_data is an h_answer: counts the call, keeps
 * the JSON (checking its length) and records "json <name>". */
void h_on_json(void *ud, const char *json, size_t len);
/* Asks for the sockets `sel` selects (iobus_selection_fetch_sockets), or
 * every room of `nsp` (iobus_namespace_all_rooms), waits for the answer and
 * returns it (a->json; "" after a failure). */
#define FETCH_SOCKETS(server, sel, a) h_fetch_sockets((server), (sel), (a), __FILE__, __LINE__)
#define ALL_ROOMS(server, nsp, a) h_all_rooms((server), (nsp), (a), __FILE__, __LINE__)
const char *h_fetch_sockets(iobus_server *server, const iobus_selection *sel, h_answer *a, const char *file, int line);
const char *h_all_rooms(iobus_server *server, const char *nsp, h_answer *a, const char *file, int line);

/* ---- socket.io-client peers (tests/c/peer.js) ---- */

#define PEER_MAX_LINES 16384

typedef struct peer {
    pid_t pid;
    int to_fd;   /* its stdin */
    int from_fd; /* its stdout */
    char buf[1 << 16];
    size_t buf_len;
    int eof;
    char *lines[PEER_MAX_LINES];
    int used[PEER_MAX_LINES];
    int n_lines;
} peer;

/* The peer the waits keep reading, so that it never blocks on a full pipe. */
extern peer *h_current_peer;

/* Starts `node peer.js http://127.0.0.1:<port>`; NULL on failure. */
peer *peer_start(uint16_t port);
/* Sends one command line (printf-style, no newline). */
void peer_cmd(peer *p, const char *fmt, ...);
/* Reads what the peer wrote, waiting up to `timeout_ms` (pumping the server). */
void peer_read_available(peer *p, int timeout_ms);
/* The first unconsumed line holding `needle` (now consumed), or NULL after the
 * timeout (a failure). The line belongs to the peer. */
#define PEER_WAIT(p, needle, ms) peer_wait((p), (needle), (ms), __FILE__, __LINE__)
const char *peer_wait(peer *p, const char *needle, int ms, const char *file, int line);
/* How many lines (consumed or not) hold `needle`. */
int peer_count(peer *p, const char *needle);
/* Reads for `ms` (scaled). */
void peer_settle(peer *p, int ms);
/* Asks the peer to quit, reaps it, frees it. */
void peer_stop(peer *p);
/* Connects client `c` with extra command members (`"\"nsp\":\"/a\""`, or "");
 * writes its sid; 0 on failure. */
int peer_connect(peer *p, const char *c, const char *extra, char *sid, size_t sid_size);

/* Sets how client `c` answers the server's emit-with-ack of `event`: `rule`
 * holds the members after the event ("\"mode\":\"ignore\""…); waits until it is in force. */
void peer_reply(peer *p, const char *c, const char *event, const char *rule);

/* ---- small helpers ---- */

/* Copies the string value of "key" (without escapes) from JSON text; 0 if absent. */
int h_json_field(const char *line, const char *key, char *out, size_t size);
/* Sends a raw request to 127.0.0.1:port; the whole answer (free it) or NULL. */
char *h_http(uint16_t port, const char *request);
/* A GET with extra header lines ("Name: value\r\n"…), Connection: close. */
char *h_http_get(uint16_t port, const char *path, const char *headers);

#ifdef __cplusplus
}
#endif

#endif /* IOBUS_TEST_HARNESS_H */
