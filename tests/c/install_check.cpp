// Compiled against an installed iobus with pkg-config: iobus.hpp is there
// and works with the installed library.
#include <cstdio>
#include <string>

#include "iobus.hpp"

int main() {
    iobus::Config cfg;
    cfg.worker_threads(1);
    iobus::Server server(cfg);
    server.start();
    std::printf("iobus.hpp %s: served on port %u\n", std::string(iobus::version()).c_str(), unsigned(server.port()));
    server.stop();
    return 0;
}
