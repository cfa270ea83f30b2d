# Scale-out over Redis (src/redis): Debian's redis-server for the tests (each
# test starts and stops its own instances on free ports), the npm side of
# the mixed-cluster tests (tests/cluster: socket.io 4.8 with
# @socket.io/redis-adapter 8.3, @socket.io/redis-streams-adapter 0.3,
# @socket.io/redis-emitter, socket.io-client), then the cluster tests
# themselves (tests/redis_cluster.rs for pub/sub, tests/redis_streams.rs for
# streams; ignored by a plain `cargo test`).
#   make setup-redis   install redis-server (apt) and tests/cluster's packages
#   make test-redis    that, then the Redis cluster tests
#   make setup-haproxy install HAProxy (apt)
#   make test-haproxy  two fixture nodes on Redis behind HAProxy, configured
#                      by the README's example, driven by socket.io-client
#                      (tests/cluster/haproxy.test.js)

.PHONY: setup-redis test-redis setup-haproxy test-haproxy

setup-redis:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	cd tests/cluster && $(NPM_INSTALL)

test-redis: setup-redis
	$(CARGO) test --test redis_cluster --test redis_streams -- --include-ignored

setup-haproxy:
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq haproxy >/dev/null; }

test-haproxy: setup-redis setup-haproxy
	$(CARGO) build --example fixture
	cd tests/cluster && node --test haproxy.test.js
