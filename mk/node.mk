# The Node binding (bindings/node): installed the way a user installs it
# (its install script builds libiobus with cargo and copies it into the
# package), then its node:test suite — the socket.io API scenarios against
# iobus and against the npm socket.io server, over every transport — and the
# browser end-to-end test against examples/chat/chat.js.
#   make node-binding        npm install ./bindings/node (at the root, not saved)
#   make test-node-binding   that, the binding's tests, and the chat e2e test

NODE_BINDING := bindings/node

.PHONY: node-binding test-node-binding

# The root install comes after setup-npm: a plain `npm install` at the root
# prunes packages installed with --no-save, this one included.
node-binding: setup-npm
	cd $(NODE_BINDING) && $(NPM_INSTALL)
	$(NPM_INSTALL) --no-save ./$(NODE_BINDING)

test-node-binding: node-binding setup-browser setup-redis
	cd $(NODE_BINDING) && npm test
	cd tests/e2e && IOBUS_CHAT="node $(CURDIR)/examples/chat/chat.js" npm test
