# iobus — build, test, run.
#   make test        every test (installs what it needs: npm, pip, apt)
#   make chat        the chat server on http://127.0.0.1:$(PORT)
#   make conformance the fixture the official protocol suites expect, on $(PORT)

SHELL := /bin/bash
PORT ?= 3000
CARGO ?= cargo
PYTHON ?= python3
NPM_INSTALL := npm install --no-audit --no-fund --loglevel=error

.PHONY: all setup setup-npm setup-python setup-browser build lint test test-rust test-readme test-node test-python test-e2e chat conformance clean

all: build

# Parts of the build owned by the bindings and the C face.
-include mk/*.mk

setup: setup-npm setup-python setup-browser

setup-npm:
	$(NPM_INSTALL)
	cd tests/node && $(NPM_INSTALL)

# Debian's Chromium, driven by playwright-core (which never downloads a browser).
setup-browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	cd tests/e2e && $(NPM_INSTALL)

setup-python:
	$(PYTHON) -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt

build:
	$(CARGO) build --lib --examples

# Also without Redis: the `redis` feature (on by default) is optional for
# Rust users.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --no-default-features --all-targets -- -D warnings

test-rust:
	$(CARGO) test

# The README's C example compiles (its Rust example is a doctest).
test-readme: build
	@mkdir -p target/readme
	sed -n '/^```c$$/,/^```$$/p' README.md | sed '1d;$$d' > target/readme/example.c
	$(CC) -std=c99 -Wall -Wextra -Werror -Iinclude target/readme/example.c -Ltarget/debug -liobus -o target/readme/example

test-node: build
	cd tests/node && npm test

test-python: build
	$(PYTHON) -m pytest tests/python -q

test-e2e: build
	cd tests/e2e && npm test

test: setup build lint test-rust test-readme test-node test-python test-e2e test-c test-python-binding test-node-binding test-redis test-haproxy test-e2e-cluster test-fuzz

# The chat app served by its C host (examples/chat/chat.c).
chat: setup-npm chat-c

conformance:
	$(CARGO) run --release --example conformance -- $(PORT)

clean:
	$(CARGO) clean
