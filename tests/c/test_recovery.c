/*
 * Connection state recovery through the C ABI, against a real
 * socket.io-client peer that reconnects by itself: the setter and its
 * bounds; a client whose transport drops gets its socket id, rooms and the
 * data the host stored from its disconnect callback back, and every packet
 * emitted meanwhile (to its room and to itself) before anything new; the
 * host hears of the recovery through its connect callback
 * (iobus_connect_recovered), with the connection already accepted; a
 * second drop recovers again; a client that left on purpose does not.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "iobus.h"

static iobus_server *server;

static void on_connect(void *ud, iobus_connect *req) {
    (void)ud;
    int recovered = iobus_connect_recovered(req);
    h_log_add("connect sid=%s recovered=%d", iobus_connect_socket_id(req), recovered);
    /* For a recovery the connection is already accepted: accepting again
     * is harmless. */
    CHECK_OK(iobus_connect_accept(req));
}

static void on_disconnect(void *ud, const char *nsp, const char *sid, const char *reason, const char *rooms) {
    (void)ud;
    (void)nsp;
    /* The host's copy of the socket's data is final now: keep it with the
     * dropped socket, so that a recovery brings it back. */
    iobus_status st = iobus_socket_set_data(server, sid, "{\"name\":\"ada\",\"visits\":2}", SIZE_MAX);
    h_log_add("disconnect sid=%s reason=%s rooms=%s set_data=%d", sid, reason, rooms, (int)st);
}

static void emit_tick(const char *room, int n) {
    char args[32];
    snprintf(args, sizeof args, "[%d]", n);
    const char *rooms[] = {room};
    iobus_selection sel = {0};
    sel.rooms = rooms;
    sel.room_count = 1;
    CHECK_OK(iobus_selection_emit(server, &sel, "tick", args, SIZE_MAX, NULL, 0));
}

int main(void) {
    h_init(120);

    SECTION("the setter: off by default, bounds checked");
    iobus_config *cfg = iobus_config_new();
    CHECK_ST(iobus_config_set_connection_state_recovery(NULL, true, 0, true, 0), IOBUS_ERR_NULL_ARGUMENT);
    CHECK_ST(iobus_config_set_connection_state_recovery(cfg, true, 100ULL * 24 * 3600 * 1000, true, 0),
             IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_HAS(iobus_last_error(), "max disconnection duration");
    CHECK_ST(iobus_config_set_connection_state_recovery(cfg, true, 1000, true, 10), IOBUS_ERR_INVALID_ARGUMENT);
    CHECK_OK(iobus_config_set_connection_state_recovery(cfg, false, 0, true, 0));
    CHECK_OK(iobus_config_set_connection_state_recovery(cfg, true, 10000, true, 0));
    CHECK_OK(iobus_server_new(cfg, &server));
    iobus_config_free(cfg);
    CHECK_OK(iobus_server_on_connect(server, NULL, on_connect, NULL));
    CHECK_OK(iobus_server_on_disconnect(server, NULL, on_disconnect, NULL));
    CHECK_OK(iobus_server_start(server, NULL, 0));
    uint16_t port = 0;
    CHECK_OK(iobus_server_port(server, &port));
    peer *p = peer_start(port);
    CHECK(p != NULL);
    if (p) {
        SECTION("a new connection is not a recovery");
        char sid[32];
        CHECK(peer_connect(p, "a", "\"reconnection\":true", sid, sizeof sid));
        char needle[256];
        snprintf(needle, sizeof needle, "connect sid=%s recovered=0", sid);
        LOG_WAIT(needle, 5000);
        CHECK_OK(iobus_socket_join(server, sid, "news"));
        CHECK_OK(iobus_socket_set_data(server, sid, "{\"name\":\"ada\",\"visits\":1}", SIZE_MAX));
        emit_tick("news", 0);
        PEER_WAIT(p, "{\"t\":\"event\",\"c\":\"a\",\"event\":\"tick\",\"args\":[0,", 5000);

        for (int round = 1; round <= 2; round++) {
            SECTION(round == 1 ? "a dropped client recovers id, rooms, data and missed packets"
                               : "a second drop recovers again");
            peer_cmd(p, "{\"op\":\"drop\",\"c\":\"a\"}");
            PEER_WAIT(p, "{\"t\":\"disconnect\",\"c\":\"a\"", 5000);
            snprintf(needle, sizeof needle, "disconnect sid=%s reason=transport close", sid);
            LOG_WAIT(needle, 5000);
            CHECK(h_log_count("set_data=0") >= round);
            /* While it is away (it reconnects after 200 ms). */
            emit_tick("news", round * 10 + 1);
            emit_tick("news", round * 10 + 2);
            char args[64];
            snprintf(args, sizeof args, "[\"to you %d\"]", round);
            const char *own[] = {sid};
            iobus_selection me = {0};
            me.rooms = own;
            me.room_count = 1;
            CHECK_OK(iobus_selection_emit(server, &me, "direct", args, SIZE_MAX, NULL, 0));

            snprintf(needle, sizeof needle, "{\"t\":\"connect\",\"c\":\"a\",\"sid\":\"%s\",\"recovered\":true}", sid);
            const char *back = PEER_WAIT(p, needle, 5000);
            CHECK(back != NULL);
            snprintf(needle, sizeof needle, "connect sid=%s recovered=1", sid);
            LOG_WAIT(needle, 5000);
            snprintf(needle, sizeof needle, "{\"t\":\"event\",\"c\":\"a\",\"event\":\"tick\",\"args\":[%d,", round * 10 + 1);
            PEER_WAIT(p, needle, 5000);
            snprintf(needle, sizeof needle, "{\"t\":\"event\",\"c\":\"a\",\"event\":\"tick\",\"args\":[%d,", round * 10 + 2);
            PEER_WAIT(p, needle, 5000);
            snprintf(needle, sizeof needle, "{\"t\":\"event\",\"c\":\"a\",\"event\":\"direct\",\"args\":[\"to you %d\",", round);
            PEER_WAIT(p, needle, 5000);

            char *json = NULL;
            CHECK_OK(iobus_socket_rooms(server, sid, &json, NULL));
            CHECK(json && strstr(json, "\"news\""));
            iobus_string_free(json);
            json = NULL;
            CHECK_OK(iobus_socket_data(server, sid, &json, NULL));
            CHECK(json && strcmp(json, "{\"name\":\"ada\",\"visits\":2}") == 0);
            iobus_string_free(json);
            /* Live again, and nothing came twice. */
            emit_tick("news", round * 10 + 3);
            snprintf(needle, sizeof needle, "{\"t\":\"event\",\"c\":\"a\",\"event\":\"tick\",\"args\":[%d,", round * 10 + 3);
            PEER_WAIT(p, needle, 5000);
            snprintf(needle, sizeof needle, "\"event\":\"tick\",\"args\":[%d,", round * 10 + 1);
            CHECK(peer_count(p, needle) == 1);
        }

        SECTION("a client that leaves on purpose is not kept");
        peer_cmd(p, "{\"op\":\"disconnect\",\"c\":\"a\"}");
        snprintf(needle, sizeof needle, "disconnect sid=%s reason=client namespace disconnect", sid);
        LOG_WAIT(needle, 5000);
        /* Its data cannot be stored any more: nothing is kept for it. (The
         * callback is queued as the socket starts to close, so the socket
         * may still have been there when it ran; ask again until it is gone.) */
        iobus_status kept = IOBUS_OK;
        for (int i = 0; i < 200 && kept == IOBUS_OK; i++) {
            kept = iobus_socket_set_data(server, sid, "{\"name\":\"ada\",\"visits\":3}", SIZE_MAX);
            if (kept == IOBUS_OK) h_sleep_ms(10);
        }
        CHECK_ST(kept, IOBUS_ERR_UNKNOWN_SOCKET);
        peer_stop(p);
    }
    iobus_server_free(server);
    h_log_clear();
    return h_finish("test_recovery");
}
