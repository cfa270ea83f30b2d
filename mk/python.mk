# The Python binding (bindings/python): installed the way a user installs it
# (the build compiles libiobus and puts it inside the package), then its
# pytest suite against python-socketio and npm socket.io-client clients, and
# the browser end-to-end test against examples/chat/chat.py.
#   make python-binding        pip install ./bindings/python
#   make test-python-binding   that, the binding's tests, and the chat e2e test

PY_BINDING := bindings/python
PY_PIP := $(PYTHON) -m pip --disable-pip-version-check

.PHONY: python-binding test-python-binding

python-binding:
	$(PY_PIP) install -q --force-reinstall --no-deps ./$(PY_BINDING)

test-python-binding: python-binding setup-browser setup-redis
	$(PY_PIP) install -q -r $(PY_BINDING)/tests/requirements.txt
	cd $(PY_BINDING)/tests/node && $(NPM_INSTALL)
	$(PYTHON) -m pytest $(PY_BINDING)/tests -q
	cd tests/e2e && IOBUS_CHAT="$(PYTHON) $(CURDIR)/examples/chat/chat.py" npm test
