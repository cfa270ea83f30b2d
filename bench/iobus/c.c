/* The bench contract over iobus's C API, on namespace "/":
 *   join (room, ack)       -> join the room, ack with no arguments
 *   broadcast (room, data) -> emit msg (data) to everyone in the room
 *   echo (data, ack)       -> ack (data)
 * One network worker thread; callbacks on the dispatcher thread.
 * Usage: bench_c <port>; prints a ready line once listening, stops on
 * SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iobus.h"

static iobus_server *server;
static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

/* Reads the first argument of a JSON argument array when it is a plain
 * string (no escapes: room names of the bench are plain). Writes it to
 * `room` and returns a pointer just after it, or NULL. */
static const char *first_string(const char *args, char *room, size_t cap) {
    const char *p = args;
    while (*p == ' ' || *p == '[') p++;
    if (*p != '"') return NULL;
    p++;
    size_t n = 0;
    while (*p && *p != '"') {
        if (*p == '\\' || n + 1 >= cap) return NULL;
        room[n++] = *p++;
    }
    if (*p != '"') return NULL;
    room[n] = '\0';
    return p + 1;
}

/* Answers an ack (if one was asked for). The handle is consumed on success
 * and when the client is gone; on any other error it is ours to free. */
static void answer(iobus_ack *ack, const char *args, size_t len) {
    if (!ack) return;
    iobus_status st = iobus_ack_send(ack, args, len, NULL, 0);
    if (st != IOBUS_OK && st != IOBUS_ERR_DISCONNECTED) iobus_ack_free(ack);
}

static void on_join(void *ud, const iobus_event *ev) {
    (void)ud;
    char room[256];
    if (first_string(iobus_event_args(ev, NULL), room, sizeof room)) {
        iobus_socket_join(server, iobus_event_socket_id(ev), room);
    }
    answer(iobus_event_take_ack(ev), "[]", 2);
}

static void on_broadcast(void *ud, const iobus_event *ev) {
    (void)ud;
    size_t len;
    const char *args = iobus_event_args(ev, &len);
    char room[256];
    const char *rest = first_string(args, room, sizeof room);
    if (!rest) return;
    while (*rest == ' ') rest++;
    /* `rest` is `,data]` (or `]`): the remaining arguments, sent as `msg`. */
    size_t rest_len = len - (size_t)(rest - args);
    char stack[512];
    char *data = rest_len + 1 <= sizeof stack ? stack : malloc(rest_len + 1);
    if (!data) return;
    data[0] = '[';
    size_t n = 1;
    if (*rest == ',') {
        memcpy(data + 1, rest + 1, rest_len - 1);
        n = rest_len;
    } else {
        data[n++] = ']';
    }
    const char *rooms[1] = {room};
    iobus_selection sel = {0};
    sel.rooms = rooms;
    sel.room_count = 1;
    iobus_selection_emit(server, &sel, "msg", data, n, NULL, 0);
    if (data != stack) free(data);
}

static void on_echo(void *ud, const iobus_event *ev) {
    (void)ud;
    size_t len;
    const char *args = iobus_event_args(ev, &len);
    answer(iobus_event_take_ack(ev), args, len);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 3100;
    iobus_config *cfg = iobus_config_new();
    if (!cfg) return 1;
    iobus_config_set_worker_threads(cfg, 1);
    iobus_config_set_serve_client(cfg, false);
    if (iobus_server_new(cfg, &server) != IOBUS_OK) {
        fprintf(stderr, "bench_c: %s\n", iobus_last_error());
        return 1;
    }
    iobus_config_free(cfg);
    iobus_server_on_event(server, "/", "join", on_join, NULL);
    iobus_server_on_event(server, "/", "broadcast", on_broadcast, NULL);
    iobus_server_on_event(server, "/", "echo", on_echo, NULL);
    if (iobus_server_start(server, "127.0.0.1", (uint16_t)port) != IOBUS_OK) {
        fprintf(stderr, "bench_c: cannot listen on port %d: %s\n", port, iobus_last_error());
        iobus_server_free(server);
        return 1;
    }
    printf("bench_c ready on 127.0.0.1:%d\n", port);
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!stopping) pause();
    iobus_server_free(server);
    return 0;
}
