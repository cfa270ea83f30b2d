/*
 * Compiled against an installed iobus (make install, then pkg-config): the
 * header, the library and the version agree, and a server starts on a free
 * port and stops.
 */
#include <stdio.h>
#include <string.h>

#include "iobus.h"

int main(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", IOBUS_VERSION_MAJOR, IOBUS_VERSION_MINOR, IOBUS_VERSION_PATCH);
    if (strcmp(iobus_version(), want) != 0) {
        fprintf(stderr, "header %s, library %s\n", want, iobus_version());
        return 1;
    }
    iobus_server *server = NULL;
    uint16_t port = 0;
    if (iobus_server_new(NULL, &server) != IOBUS_OK || iobus_server_start(server, NULL, 0) != IOBUS_OK ||
        iobus_server_port(server, &port) != IOBUS_OK || iobus_server_stop(server) != IOBUS_OK) {
        fprintf(stderr, "install check: %s\n", iobus_last_error());
        iobus_server_free(server);
        return 1;
    }
    iobus_server_free(server);
    printf("iobus %s: served on port %u\n", iobus_version(), (unsigned)port);
    return 0;
}
