# iobus — build, test, run.
#   make test        every test (installs what it needs: npm, pip, apt)
#   make chat        the chat server on http://127.0.0.1:$(PORT)
#   make conformance the fixture the official protocol suites expect, on $(PORT)

SHELL := /bin/bash
PORT ?= 3000
CARGO ?= cargo
PYTHON ?= python3
NPM_INSTALL := npm install --no-audit --no-fund --loglevel=error

.PHONY: all setup setup-npm setup-python build lint test test-rust test-node test-python chat conformance clean

all: build

setup: setup-npm setup-python

setup-npm:
	$(NPM_INSTALL)
	cd tests/node && $(NPM_INSTALL)

setup-python:
	$(PYTHON) -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt

build:
	$(CARGO) build --examples

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

test-rust:
	$(CARGO) test

test-node: build
	cd tests/node && npm test

test-python: build
	$(PYTHON) -m pytest tests/python -q

test: setup build lint test-rust test-node test-python

chat: setup-npm
	$(CARGO) run --release --example chat -- $(PORT)

conformance:
	$(CARGO) run --release --example conformance -- $(PORT)

clean:
	$(CARGO) clean
