/*
 * The test harness of the C test programs (see harness.h).
 */
#define _POSIX_C_SOURCE 200809L

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PEER_JS_DEFAULT
#define PEER_JS_DEFAULT "tests/c/peer.js"
#endif

/* ---- checks ------------------------------------------------------------ */

int h_checks;
int h_failures;
const char *h_section = "";

static pthread_mutex_t h_print_lock = PTHREAD_MUTEX_INITIALIZER;

int h_check(int ok, const char *what, const char *file, int line) {
    pthread_mutex_lock(&h_print_lock);
    h_checks++;
    if (!ok) {
        h_failures++;
        fprintf(stderr, "FAIL %s:%d [%s] %s\n", file, line, h_section, what);
    }
    pthread_mutex_unlock(&h_print_lock);
    return ok;
}

int h_check_status(int got, int want, const char *what, const char *file, int line) {
    int ok = got == want;
    if (!ok) {
        pthread_mutex_lock(&h_print_lock);
        fprintf(stderr, "FAIL %s:%d [%s] %s: got %d (%s: %s), want %d (%s)\n", file, line, h_section, what, got,
                iobus_status_str(got), iobus_last_error(), want, iobus_status_str(want));
        h_failures++;
        h_checks++;
        pthread_mutex_unlock(&h_print_lock);
        return 0;
    }
    return h_check(1, what, file, line);
}

int h_known_gap(int got, int documented, int current, const char *what, const char *file, int line) {
    if (got == current && got != documented && !h_strict) {
        pthread_mutex_lock(&h_print_lock);
        fprintf(stderr, "KNOWN GAP %s:%d [%s] %s: %s, documented %s\n", file, line, h_section, what,
                iobus_status_str(got), iobus_status_str(documented));
        pthread_mutex_unlock(&h_print_lock);
        return h_check(1, what, file, line);
    }
    return h_check_status(got, documented, what, file, line);
}

int h_known_gap_if(int ok, const char *note, const char *file, int line) {
    if (ok || h_strict) return h_check(ok, note, file, line);
    pthread_mutex_lock(&h_print_lock);
    fprintf(stderr, "KNOWN GAP %s:%d [%s] %s\n", file, line, h_section, note);
    pthread_mutex_unlock(&h_print_lock);
    return h_check(1, note, file, line);
}

int h_check_str(const char *a, const char *b, const char *what, const char *file, int line) {
    int ok = a && b && strcmp(a, b) == 0;
    if (!ok) {
        pthread_mutex_lock(&h_print_lock);
        fprintf(stderr, "FAIL %s:%d [%s] %s: \"%s\" != \"%s\"\n", file, line, h_section, what, a ? a : "(null)",
                b ? b : "(null)");
        h_failures++;
        h_checks++;
        pthread_mutex_unlock(&h_print_lock);
        return 0;
    }
    return h_check(1, what, file, line);
}

int h_check_has(const char *hay, const char *needle, const char *what, const char *file, int line) {
    int ok = hay && needle && strstr(hay, needle) != NULL;
    if (!ok) {
        pthread_mutex_lock(&h_print_lock);
        fprintf(stderr, "FAIL %s:%d [%s] %s: \"%s\" lacks \"%s\"\n", file, line, h_section, what,
                hay ? hay : "(null)", needle ? needle : "(null)");
        h_failures++;
        h_checks++;
        pthread_mutex_unlock(&h_print_lock);
        return 0;
    }
    return h_check(1, what, file, line);
}

/* The closing line, in the form test runners read: "N passed, N failed". */
int h_finish(const char *program) {
    if (h_lost_wakeups) fprintf(stderr, "%s: %d lost poll wake-ups (KNOWN GAP)\n", program, h_lost_wakeups);
    printf("%s: %d passed, %d failed\n", program, h_checks - h_failures, h_failures);
    fflush(stdout);
    return h_failures == 0 ? 0 : 1;
}

/* ---- time ---------------------------------------------------------------- */

int h_scale = 1;

void h_init(unsigned overall_seconds) {
    const char *s = getenv("IOBUS_TEST_TIME_SCALE");
    const char *strict = getenv("IOBUS_TEST_STRICT");
        /* Strict unless asked otherwise: every check, including the ones that
     * watch for regressions of fixed gaps (lost wake-ups), must hold. */
    h_strict = !(strict && strcmp(strict, "0") == 0);
    if (s && atoi(s) > 0) h_scale = atoi(s);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* A peer that goes away must not kill the test with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    /* The whole program is bounded: SIGALRM's default action ends it. */
    alarm(overall_seconds * (unsigned)h_scale);
}

/* A timeout in milliseconds, scaled for slow runs (Valgrind). */
int T(int ms) { return ms * h_scale; }

int64_t h_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- the server pump -------------------------------------------------------- */

/* In poll mode the waits below run the server's callbacks on this thread
 * whenever its descriptor is readable. */
iobus_server *h_pump_server;
int h_pump_calls;

int h_strict;
int h_lost_wakeups;

/* The waits here also poll when the descriptor has been quiet for a while
 * and count what that finds: a callback pending while the descriptor was
 * not readable is a lost wake-up, and a failure. */
static int64_t h_last_forced_poll;

size_t h_poll_server(iobus_server *server, int readable) {
    size_t n = 0;
    if (readable) {
        iobus_server_poll(server, 64, &n);
        h_pump_calls++;
        return n;
    }
    int64_t now = h_now_ms();
    if (now - h_last_forced_poll < T(250)) return 0;
    h_last_forced_poll = now;
    /* A callback being queued right now makes the descriptor readable in a
     * moment (the wake byte follows the push, or the end of the network
     * thread's work in hand): look again a little later before calling it
     * lost. The window scales with IOBUS_TEST_TIME_SCALE: under Valgrind,
     * which runs one thread at a time, a network thread can stay off the
     * CPU for hundreds of milliseconds. */
    struct pollfd pfd;
    pfd.fd = iobus_server_poll_fd(server);
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, T(200)) > 0) {
        iobus_server_poll(server, 64, &n);
        h_pump_calls++;
        return n;
    }
    iobus_server_poll(server, 64, &n);
    if (n > 0) {
        pthread_mutex_lock(&h_print_lock);
        h_lost_wakeups++;
        fprintf(stderr, "KNOWN GAP [%s]: %zu callbacks were pending while the poll descriptor was not readable\n",
                h_section, n);
        pthread_mutex_unlock(&h_print_lock);
        if (h_strict) h_check(0, "the poll descriptor is readable while callbacks are pending", __FILE__, __LINE__);
    }
    return n;
}

void h_pump_once(int timeout_ms) {
    if (!h_pump_server) {
        if (timeout_ms > 0) h_sleep_ms(timeout_ms);
        return;
    }
    struct pollfd pfd;
    pfd.fd = iobus_server_poll_fd(h_pump_server);
    pfd.events = POLLIN;
    pfd.revents = 0;
    int ready = poll(&pfd, 1, timeout_ms) > 0 && (pfd.revents & POLLIN);
    h_poll_server(h_pump_server, ready);
}

/* ---- the record of what callbacks saw ------------------------------------------- */

#define H_LOG_MAX 16384

static pthread_mutex_t h_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *h_log[H_LOG_MAX];
static int h_log_used[H_LOG_MAX];
static int h_log_len;

void h_log_add(const char *fmt, ...) {
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&h_log_lock);
    if (h_log_len < H_LOG_MAX) {
        h_log[h_log_len] = strdup(buf);
        h_log_used[h_log_len] = 0;
        h_log_len++;
    }
    pthread_mutex_unlock(&h_log_lock);
}

/* Index of the first unconsumed record containing `needle`, consumed; -1. */
int h_log_take(const char *needle) {
    int found = -1;
    pthread_mutex_lock(&h_log_lock);
    for (int i = 0; i < h_log_len; i++) {
        if (!h_log_used[i] && strstr(h_log[i], needle)) {
            h_log_used[i] = 1;
            found = i;
            break;
        }
    }
    pthread_mutex_unlock(&h_log_lock);
    return found;
}

int h_log_count(const char *needle) {
    int n = 0;
    pthread_mutex_lock(&h_log_lock);
    for (int i = 0; i < h_log_len; i++) {
        if (strstr(h_log[i], needle)) n++;
    }
    pthread_mutex_unlock(&h_log_lock);
    return n;
}

/* A copy of record i (free it). */
char *h_log_get(int i) {
    char *s = NULL;
    pthread_mutex_lock(&h_log_lock);
    if (i >= 0 && i < h_log_len) s = strdup(h_log[i]);
    pthread_mutex_unlock(&h_log_lock);
    return s;
}

void h_log_clear(void) {
    pthread_mutex_lock(&h_log_lock);
    for (int i = 0; i < h_log_len; i++) free(h_log[i]);
    h_log_len = 0;
    pthread_mutex_unlock(&h_log_lock);
}

/* ---- answers to queries ----------------------------------------------------------- */

void h_on_json(void *ud, const char *json, size_t len) {
    h_answer *a = ud;
    a->calls++;
    h_check(json != NULL && strlen(json) == len, "a query's answer is NUL-terminated at len", __FILE__, __LINE__);
    snprintf(a->json, sizeof a->json, "%s", json ? json : "");
    h_log_add("json %s", a->name);
}

/* Waits for the answer of a query that `st` says was issued. */
static const char *h_answered(int st, h_answer *a, const char *what, const char *file, int line) {
    char needle[256];
    if (!h_check_status(st, IOBUS_OK, what, file, line)) {
        a->json[0] = '\0';
        return a->json;
    }
    snprintf(needle, sizeof needle, "json %s", a->name);
    if (h_log_wait(needle, 3000, file, line) < 0) a->json[0] = '\0';
    return a->json;
}

const char *h_fetch_sockets(iobus_server *server, const iobus_selection *sel, h_answer *a, const char *file, int line) {
    return h_answered(iobus_selection_fetch_sockets(server, sel, h_on_json, a), a, "iobus_selection_fetch_sockets",
                      file, line);
}

const char *h_all_rooms(iobus_server *server, const char *nsp, h_answer *a, const char *file, int line) {
    return h_answered(iobus_namespace_all_rooms(server, nsp, h_on_json, a), a, "iobus_namespace_all_rooms", file,
                      line);
}

/* ---- socket.io-client peers ------------------------------------------------------- */

peer *h_current_peer;

/* Starts `node peer.js http://127.0.0.1:<port>`; NULL on failure. */
peer *peer_start(uint16_t port) {
    int in_pipe[2], out_pipe[2];
    const char *script = getenv("IOBUS_PEER_JS");
    const char *node = getenv("IOBUS_NODE");
    char url[64];
    if (!script) script = PEER_JS_DEFAULT;
    if (!node) node = "node";
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)port);
    if (pipe(in_pipe) != 0) return NULL;
    if (pipe(out_pipe) != 0) {
        close(in_pipe[0]);
        close(in_pipe[1]);
        return NULL;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return NULL;
    if (pid == 0) {
        dup2(in_pipe[0], 0);
        dup2(out_pipe[1], 1);
        close(in_pipe[0]);
        close(in_pipe[1]);
        close(out_pipe[0]);
        close(out_pipe[1]);
        execlp(node, node, script, url, (char *)NULL);
        _exit(127);
    }
    close(in_pipe[0]);
    close(out_pipe[1]);
    peer *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->pid = pid;
    p->to_fd = in_pipe[1];
    p->from_fd = out_pipe[0];
    fcntl(p->from_fd, F_SETFL, fcntl(p->from_fd, F_GETFL) | O_NONBLOCK);
    /* Later peers must not inherit these ends. */
    fcntl(p->from_fd, F_SETFD, FD_CLOEXEC);
    fcntl(p->to_fd, F_SETFD, FD_CLOEXEC);
    h_current_peer = p;
    if (!PEER_WAIT(p, "{\"t\":\"ready\"}", 15000)) {
        peer_stop(p);
        return NULL;
    }
    return p;
}

static void peer_add_line(peer *p, const char *line, size_t len) {
    if (p->n_lines >= PEER_MAX_LINES) return;
    char *s = malloc(len + 1);
    if (!s) abort();
    memcpy(s, line, len);
    s[len] = '\0';
    p->lines[p->n_lines] = s;
    p->used[p->n_lines] = 0;
    p->n_lines++;
}

/* Reads what the peer has written, waiting up to `timeout_ms` for the first
 * byte; the server is pumped meanwhile in poll mode. */
void peer_read_available(peer *p, int timeout_ms) {
    if (p->eof) {
        h_pump_once(timeout_ms);
        return;
    }
    struct pollfd pfd[2];
    int n = 1;
    pfd[0].fd = p->from_fd;
    pfd[0].events = POLLIN;
    pfd[0].revents = 0;
    if (h_pump_server) {
        pfd[1].fd = iobus_server_poll_fd(h_pump_server);
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        n = 2;
    }
    int got = poll(pfd, (nfds_t)n, timeout_ms);
    if (n == 2) h_poll_server(h_pump_server, got > 0 && (pfd[1].revents & POLLIN));
    if (got <= 0) return;
    if (!(pfd[0].revents & (POLLIN | POLLHUP))) return;
    for (;;) {
        ssize_t r = read(p->from_fd, p->buf + p->buf_len, sizeof p->buf - p->buf_len - 1);
        if (r == 0) p->eof = 1;
        if (r <= 0) break;
        p->buf_len += (size_t)r;
        char *start = p->buf;
        char *nl;
        while ((nl = memchr(start, '\n', p->buf_len - (size_t)(start - p->buf))) != NULL) {
            peer_add_line(p, start, (size_t)(nl - start));
            start = nl + 1;
        }
        p->buf_len -= (size_t)(start - p->buf);
        memmove(p->buf, start, p->buf_len);
        if (p->buf_len >= sizeof p->buf - 1) p->buf_len = 0; /* a line too long to keep */
    }
}

/* Sends one command line (printf-style, without the newline). */
void peer_cmd(peer *p, const char *fmt, ...) {
    char buf[1 << 16];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf - 1) {
        h_check(0, "peer command fits the buffer", __FILE__, __LINE__);
        return;
    }
    buf[n++] = '\n';
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = write(p->to_fd, buf + off, (size_t)n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            h_check(0, "write to the peer", __FILE__, __LINE__);
            return;
        }
        off += (size_t)w;
    }
}

/* The first unconsumed line holding `needle` (now consumed), or NULL. */
static const char *peer_find(peer *p, const char *needle) {
    for (int i = 0; i < p->n_lines; i++) {
        if (!p->used[i] && strstr(p->lines[i], needle)) {
            p->used[i] = 1;
            return p->lines[i];
        }
    }
    return NULL;
}

/* Waits for such a line; NULL after the timeout (a failure). */
const char *peer_wait(peer *p, const char *needle, int ms, const char *file, int line) {
    int64_t deadline = h_now_ms() + T(ms);
    for (;;) {
        const char *l = peer_find(p, needle);
        if (l) return l;
        int64_t left = deadline - h_now_ms();
        if (left < 0) break;
        peer_read_available(p, left > 20 ? 20 : (int)left);
    }
    h_check(0, needle, file, line);
    fprintf(stderr, "  (the peer printed no such line within %d ms; its lines:)\n", T(ms));
    for (int i = 0; i < p->n_lines; i++) fprintf(stderr, "   %c %s\n", p->used[i] ? '-' : '*', p->lines[i]);
    return NULL;
}

/* How many lines (consumed or not) hold `needle`, after reading what is there. */
int peer_count(peer *p, const char *needle) {
    peer_read_available(p, 0);
    int n = 0;
    for (int i = 0; i < p->n_lines; i++) {
        if (strstr(p->lines[i], needle)) n++;
    }
    return n;
}

/* Reads for `ms` milliseconds (pumping the server). */
void peer_settle(peer *p, int ms) {
    int64_t deadline = h_now_ms() + T(ms);
    while (h_now_ms() < deadline) peer_read_available(p, 5);
}

/* Asks the peer to quit and reaps it (killed if it lingers). */
void peer_stop(peer *p) {
    if (!p) return;
    peer_cmd(p, "{\"op\":\"quit\"}");
    close(p->to_fd);
    int64_t deadline = h_now_ms() + T(3000);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid || r < 0) break;
        if (h_now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            break;
        }
        peer_read_available(p, 10);
    }
    close(p->from_fd);
    for (int i = 0; i < p->n_lines; i++) free(p->lines[i]);
    if (h_current_peer == p) h_current_peer = NULL;
    free(p);
}

/* Connects client `c` (extra JSON members in `extra`, e.g. "\"nsp\":\"/a\"")
 * and writes its sid to `sid`; 0 on failure. */
int peer_connect(peer *p, const char *c, const char *extra, char *sid, size_t sid_size) {
    char needle[128];
    peer_cmd(p, "{\"op\":\"connect\",\"c\":\"%s\"%s%s}", c, extra && *extra ? "," : "", extra ? extra : "");
    snprintf(needle, sizeof needle, "{\"t\":\"connect\",\"c\":\"%s\"", c);
    const char *l = PEER_WAIT(p, needle, 5000);
    if (!l) return 0;
    return h_json_field(l, "sid", sid, sid_size);
}

/* Sets how a client answers the server's emit-with-ack of one event, and
 * waits until the rule is in force. */
void peer_reply(peer *p, const char *c, const char *event, const char *rule) {
    char needle[256];
    peer_cmd(p, "{\"op\":\"reply\",\"c\":\"%s\",\"event\":\"%s\",%s}", c, event, rule);
    snprintf(needle, sizeof needle, "{\"t\":\"reply_set\",\"c\":\"%s\",\"event\":\"%s\"}", c, event);
    PEER_WAIT(p, needle, 5000);
}

/* Waits up to `ms` for something to do: reads the current peer, pumps the
 * server in poll mode, or sleeps. */
void h_idle(int ms) {
    if (h_current_peer) peer_read_available(h_current_peer, ms);
    else h_pump_once(ms);
}

/* Waits for a record with `needle`, pumping the server; consumes and returns
 * its index, or -1 after the timeout (reported as a failure). */
int h_log_wait(const char *needle, int ms, const char *file, int line) {
    int64_t deadline = h_now_ms() + T(ms);
    for (;;) {
        int i = h_log_take(needle);
        if (i >= 0) return i;
        if (h_now_ms() > deadline) break;
        h_idle(5);
    }
    h_check(0, needle, file, line);
    fprintf(stderr, "  (no callback record with it within %d ms; records:)\n", T(ms));
    pthread_mutex_lock(&h_log_lock);
    for (int i = 0; i < h_log_len; i++) fprintf(stderr, "   %c %s\n", h_log_used[i] ? '-' : '*', h_log[i]);
    pthread_mutex_unlock(&h_log_lock);
    return -1;
}

/* Pumps (or sleeps) for `ms` milliseconds. */
void h_settle(int ms) {
    int64_t deadline = h_now_ms() + T(ms);
    while (h_now_ms() < deadline) h_idle(5);
}

/* ---- tiny JSON reading for test lines ----------------------------------------------- */

/* Copies the string value of "key" (no escapes expected) from a JSON text. */
int h_json_field(const char *line, const char *key, char *out, size_t size) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *s = strstr(line, pat);
    if (!s) return 0;
    s += strlen(pat);
    const char *e = strchr(s, '"');
    if (!e || (size_t)(e - s) >= size) return 0;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    return 1;
}

/* ---- raw HTTP ------------------------------------------------------------------------ */

/* Sends `request` to 127.0.0.1:port and returns the whole answer (free it),
 * or NULL. The request should say "Connection: close". */
char *h_http(uint16_t port, const char *request) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return NULL;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv;
    tv.tv_sec = 3 * h_scale;
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return NULL;
    }
    size_t len = strlen(request), off = 0;
    while (off < len) {
        ssize_t w = write(fd, request + off, len - off);
        if (w <= 0) {
            close(fd);
            return NULL;
        }
        off += (size_t)w;
    }
    size_t cap = 4096, used = 0;
    char *out = malloc(cap);
    if (!out) abort();
    for (;;) {
        if (used + 1024 > cap) {
            cap *= 2;
            char *bigger = realloc(out, cap);
            if (!bigger) abort();
            out = bigger;
        }
        ssize_t r = read(fd, out + used, cap - used - 1);
        if (r <= 0) break;
        used += (size_t)r;
    }
    out[used] = '\0';
    close(fd);
    return out;
}

/* A GET with optional extra header lines ("Name: value\r\n"...). */
char *h_http_get(uint16_t port, const char *path, const char *headers) {
    char req[2048];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%sConnection: close\r\n\r\n", path,
             (unsigned)port, headers ? headers : "");
    return h_http(port, req);
}

