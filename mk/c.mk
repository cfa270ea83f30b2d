# The C face: the C and C++ tests (plain, AddressSanitizer, Valgrind), the
# header and symbol checks, the C chat host, and `make install`.
#
#   make test-c                     every C-side check (under ~2 minutes once built)
#   make header                     include/iobus.h regenerated from src/ffi
#   make chat-c [PORT=8080]         the chat served by the C host (examples/chat/chat.c)
#   make install PREFIX=/some/dir   lib/libiobus.{so,a}, include/iobus.{h,hpp},
#                                   lib/pkgconfig/iobus.pc
#
# `chat-c` and `install` use the release library (C_PROFILE); the tests use
# the debug one (C_TEST_PROFILE), with Rust's debug assertions and the same
# build as `make build`.

C_PROFILE ?= release
C_TEST_PROFILE ?= debug
C_LIB_DIR := target/$(C_PROFILE)
C_TEST_LIB_DIR := target/$(C_TEST_PROFILE)
c_cargo_flags = $(if $(filter release,$(1)),--release,)
PREFIX ?= /usr/local
C_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# What a static link of libiobus.a needs (rustc --print native-static-libs).
C_STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
C_CHAT := build/c/chat
C_SUDO = $$(if [ "$$(id -u)" = 0 ]; then echo; else echo sudo; fi)

.PHONY: c-lib c-test-lib header c-header-check c-json c-setup test-c test-c-install test-c-e2e test-c-e2e-valgrind chat-c install

# Builds the library; build.rs regenerates include/iobus.h on the way.
c-lib:
	$(CARGO) build $(call c_cargo_flags,$(C_PROFILE)) --lib

c-test-lib:
	$(CARGO) build $(call c_cargo_flags,$(C_TEST_PROFILE)) --lib

# build.rs runs cbindgen when src/ffi or cbindgen.toml changed; touching
# cbindgen.toml makes it run now, so a header edited by hand is replaced too.
header:
	touch cbindgen.toml
	$(CARGO) build --lib

# Regenerating the header must change nothing.
c-header-check: c-test-lib
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git diff --exit-code -- include/iobus.h && echo "include/iobus.h: regenerated, unchanged"; \
	else echo "not a git work tree: header regeneration not compared"; fi

# Jansson, the JSON library of the C chat host (Debian's libjansson-dev).
c-json:
	@echo '#include <jansson.h>' | $(CC) -E -x c - >/dev/null 2>&1 || { \
		$(C_SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(C_SUDO) apt-get install -y -qq libjansson-dev >/dev/null; }

# The peers' npm packages, Valgrind, and Jansson for the chat host.
c-setup: c-json
	cd tests/c && $(NPM_INSTALL)
	@command -v valgrind >/dev/null || { \
		$(C_SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(C_SUDO) apt-get install -y -qq valgrind >/dev/null; }

$(C_CHAT): examples/chat/chat.c include/iobus.h c-lib c-json
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic -O2 -g -Iinclude -DCHAT_SOURCE_DIR='"$(CURDIR)/examples/chat"' \
		$< -L$(C_LIB_DIR) -Wl,-rpath,$(CURDIR)/$(C_LIB_DIR) -liobus -ljansson -o $@

# Everything: header and symbol checks, the C/C++ tests plain + ASan +
# Valgrind and the C chat host's input test (tests/c/run.sh), make install
# through pkg-config, and the browser end-to-end test against the C host.
test-c: c-header-check c-setup
	IOBUS_LIB_DIR=$(C_TEST_LIB_DIR) tests/c/run.sh
	$(MAKE) --no-print-directory test-c-install
	$(MAKE) --no-print-directory test-c-e2e

# The browser end-to-end test against the C host that tests/c/run.sh built.
test-c-e2e: setup-browser c-json c-test-lib
	@test -x tests/c/build/chat || IOBUS_LIB_DIR=$(C_TEST_LIB_DIR) tests/c/run.sh plain >/dev/null
	cd tests/e2e && IOBUS_CHAT=$(CURDIR)/tests/c/build/chat npm test

# The same with the C host under Valgrind (its exit code carries memcheck's verdict).
test-c-e2e-valgrind: setup-browser c-setup c-test-lib
	@test -x tests/c/build/chat || IOBUS_LIB_DIR=$(C_TEST_LIB_DIR) tests/c/run.sh plain >/dev/null
	cd tests/e2e && IOBUS_CHAT="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect $(CURDIR)/tests/c/build/chat" npm test

# Installs into a temporary prefix and builds against it through pkg-config:
# shared (C and C++) and static.
test-c-install: c-test-lib
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory install C_PROFILE=$(C_TEST_PROFILE) PREFIX="$$tmp/prefix" >/dev/null; \
	export PKG_CONFIG_PATH="$$tmp/prefix/lib/pkgconfig"; \
	test "$$(pkg-config --variable=prefix iobus)" = "$$tmp/prefix"; \
	test "$$(pkg-config --modversion iobus)" = "$(C_VERSION)"; \
	$(CC) -std=c99 -Wall -Wextra -Werror tests/c/install_check.c $$(pkg-config --cflags --libs iobus) -o "$$tmp/check_c"; \
	LD_LIBRARY_PATH="$$tmp/prefix/lib" "$$tmp/check_c"; \
	$(CXX) -std=c++17 -Wall -Wextra -Werror tests/c/install_check.cpp $$(pkg-config --cflags --libs iobus) -o "$$tmp/check_cxx"; \
	LD_LIBRARY_PATH="$$tmp/prefix/lib" "$$tmp/check_cxx"; \
	$(CC) -std=c99 -Wall -Wextra -Werror tests/c/install_check.c $$(pkg-config --cflags iobus) \
		"$$tmp/prefix/lib/libiobus.a" $$(pkg-config --static --libs iobus | sed 's/-liobus\b//') \
		-o "$$tmp/check_static"; \
	"$$tmp/check_static"; \
	! ldd "$$tmp/check_static" | grep -q libiobus; \
	echo "make install: pkg-config builds (shared C, shared C++, static) passed"

chat-c: setup-npm c-lib $(C_CHAT)
	./$(C_CHAT) $(PORT)

install: c-lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(C_LIB_DIR)/libiobus.so $(DESTDIR)$(PREFIX)/lib/libiobus.so
	install -m 0644 $(C_LIB_DIR)/libiobus.a $(DESTDIR)$(PREFIX)/lib/libiobus.a
	install -m 0644 include/iobus.h include/iobus.hpp $(DESTDIR)$(PREFIX)/include/
	printf '%s\n' \
		'prefix=$(PREFIX)' \
		'exec_prefix=$${prefix}' \
		'libdir=$${exec_prefix}/lib' \
		'includedir=$${prefix}/include' \
		'' \
		'Name: iobus' \
		'Description: A Socket.IO v5 / Engine.IO v4 server, embeddable through a C ABI' \
		'Version: $(C_VERSION)' \
		'Libs: -L$${libdir} -liobus' \
		'Libs.private: $(C_STATIC_LIBS)' \
		'Cflags: -I$${includedir}' \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/iobus.pc
