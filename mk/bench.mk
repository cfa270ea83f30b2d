# Benchmarks (bench/): iobus beside socket.io, socketioxide and python-socketio.
#   make bench                                  every server and scenario; writes BENCHMARKS.md
#                                               (the cluster fan-out needs redis-server: setup-redis)
#   make bench-server HOST=rust PORT=3100       one of iobus's bench contract servers in the
#                                               foreground (HOST: rust, c, python, node)

HOST ?= rust

.PHONY: bench bench-build-c bench-server

bench-build-c:
	$(CARGO) build --release --lib --example bench_rust
	@mkdir -p target/release/examples
	$(CC) -std=c99 -Wall -Wextra -Werror -O2 -Iinclude bench/iobus/c.c \
		-Ltarget/release -Wl,-rpath,$(CURDIR)/target/release -liobus -o target/release/examples/bench_c

bench-server:
	@case "$(HOST)" in \
	  rust) $(CARGO) run --release --example bench_rust -- $(PORT) ;; \
	  c) $(MAKE) --no-print-directory bench-build-c >/dev/null && exec target/release/examples/bench_c $(PORT) ;; \
	  python) $(MAKE) --no-print-directory python-binding >/dev/null && exec $(PYTHON) bench/iobus/python.py $(PORT) ;; \
	  node) $(MAKE) --no-print-directory node-binding >/dev/null && exec node bench/iobus/node.js $(PORT) ;; \
	  *) echo "HOST must be one of rust, c, python, node" >&2; exit 2 ;; \
	esac

bench: bench-build-c python-binding node-binding setup-redis
	bench/run.sh
