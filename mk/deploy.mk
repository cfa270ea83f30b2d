# The chat as a cluster: two C chat hosts (examples/chat/chat.c) joined
# through a redis-server of their own (examples/chat/cluster.sh), and its
# browser end-to-end test (tests/e2e/chat-cluster.test.js: its own
# redis-server and two hosts on free ports, a Chromium page on each).
#   make chat-cluster [CHAT_PORT_A=3000 CHAT_PORT_B=3001 REDIS_PORT=6390]
#   make test-e2e-cluster   (under a minute once built)

CHAT_PORT_A ?= 3000
CHAT_PORT_B ?= 3001
REDIS_PORT ?=
# The host the cluster test runs: chat.c linked to the test (debug) library.
C_CHAT_TEST := build/c/chat-test

.PHONY: chat-cluster test-e2e-cluster c-chat-test

chat-cluster: setup-npm setup-redis c-lib $(C_CHAT)
	CHAT_HOST=$(C_CHAT) PORT_A=$(CHAT_PORT_A) PORT_B=$(CHAT_PORT_B) REDIS_PORT=$(REDIS_PORT) examples/chat/cluster.sh

c-chat-test:
	$(MAKE) --no-print-directory C_PROFILE=$(C_TEST_PROFILE) C_CHAT=$(C_CHAT_TEST) $(C_CHAT_TEST)

test-e2e-cluster: setup-browser setup-redis c-chat-test
	cd tests/e2e && IOBUS_CHAT=$(CURDIR)/$(C_CHAT_TEST) node --test chat-cluster.test.js
