// The chat page: joins with a name, follows one room at a time, and keeps
// itself joined across reconnects. The server's event contract is described
// in examples/chat/main.rs.
//
// The server keeps a page whose connection drops (connection state
// recovery): coming back in time, the socket is the same one, still in its
// room, and the messages it missed are replayed to it before `connect`. The
// page then just carries on; only a new session (the server restarted, or
// the page was away too long) joins again.
(function () {
  'use strict';

  var TYPING_SEND_EVERY = 1000; // ms between two `typing` emits while typing
  var TYPING_SHOW_FOR = 2000; // ms a "X is typing…" line stays without news

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    app: $('app'),
    status: $('status'),
    me: $('me'),
    currentRoom: $('current-room'),
    leave: $('leave-button'),
    roomForm: $('room-form'),
    roomInput: $('room-input'),
    roomList: $('room-list'),
    users: $('users'),
    userCount: $('user-count'),
    messages: $('messages'),
    typing: $('typing'),
    chatForm: $('chat-form'),
    messageInput: $('message-input'),
    send: $('send-button'),
    dmTarget: $('dm-target'),
    dmTargetName: $('dm-target-name'),
    dmCancel: $('dm-cancel'),
    joinForm: $('join-form'),
    nameInput: $('name-input'),
    joinError: $('join-error'),
  };

  var state = {
    name: null, // set while the user wants to be in the chat
    room: null, // the room the server last confirmed
    joined: false, // the server has acknowledged our join on this connection
    leaving: false,
    unloading: false, // the page is being closed or put away
    members: [], // [{id, name}] of the current room
    dm: null, // {id, name} of the selected DM recipient
    typers: new Map(), // name -> timer
    lastTypingSent: 0,
  };

  var socket = io();
  window.chat = { socket: socket, state: state };

  // ---- rendering -------------------------------------------------------

  function setStatus(kind, text) {
    els.status.dataset.state = kind;
    els.status.textContent = text;
  }

  function colorFor(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return 'hsl(' + (h % 360) + ', 55%, 52%)';
  }

  function avatar(name) {
    var a = document.createElement('span');
    a.className = 'avatar';
    a.textContent = (name || '?').trim().charAt(0) || '?';
    a.style.background = colorFor(name || '?');
    return a;
  }

  function timeOf(ts) {
    var d = typeof ts === 'number' ? new Date(ts) : new Date();
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function scrollDown() {
    els.messages.scrollTop = els.messages.scrollHeight;
  }

  function addNotice(kind, text) {
    var li = document.createElement('li');
    li.className = 'notice';
    li.dataset.testid = 'notice';
    li.dataset.kind = kind;
    li.textContent = text;
    els.messages.appendChild(li);
    scrollDown();
    return li;
  }

  // kind: chat | dm | broadcast
  function addMessage(opts) {
    var li = document.createElement('li');
    li.className = 'msg msg-' + opts.kind + (opts.own ? ' own' : '');
    li.dataset.testid = opts.kind === 'chat' ? 'message' : opts.kind;
    li.dataset.kind = opts.kind;
    if (opts.name) li.dataset.name = opts.name;
    if (opts.room) li.dataset.room = opts.room;
    if (opts.direction) li.dataset.direction = opts.direction;

    li.appendChild(avatar(opts.avatarName || opts.name || '#'));
    var body = document.createElement('div');
    body.className = 'body';
    var meta = document.createElement('div');
    meta.className = 'meta';
    if (opts.tag) {
      var tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = opts.tag;
      meta.appendChild(tag);
    }
    var author = document.createElement('span');
    author.className = 'author';
    author.dataset.testid = 'author';
    author.textContent = opts.label || opts.name || '';
    meta.appendChild(author);
    var time = document.createElement('time');
    time.dataset.testid = 'time';
    var when = typeof opts.ts === 'number' ? opts.ts : Date.now();
    time.dateTime = new Date(when).toISOString();
    time.textContent = timeOf(when);
    meta.appendChild(time);
    var text = document.createElement('div');
    text.className = 'text';
    text.dataset.testid = 'text';
    text.textContent = opts.text;
    body.appendChild(meta);
    body.appendChild(text);
    li.appendChild(body);
    els.messages.appendChild(li);
    scrollDown();
    return li;
  }

  function renderRoom() {
    els.currentRoom.textContent = state.room || '—';
    els.messageInput.placeholder = state.dm
      ? 'Message ' + state.dm.name + ' privately'
      : 'Message #' + (state.room || '');
    var links = els.roomList.querySelectorAll('.room-link');
    for (var i = 0; i < links.length; i++) {
      links[i].classList.toggle('active', links[i].dataset.room === state.room);
    }
  }

  function renderUsers() {
    els.users.textContent = '';
    els.userCount.textContent = String(state.members.length);
    state.members.forEach(function (m) {
      var li = document.createElement('li');
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'user' + (state.dm && state.dm.id === m.id ? ' selected' : '');
      b.dataset.testid = 'user';
      b.dataset.id = m.id;
      b.dataset.name = m.name;
      var self = m.id === socket.id;
      b.dataset.self = String(self);
      b.appendChild(avatar(m.name));
      var label = document.createElement('span');
      label.className = 'user-name';
      label.textContent = m.name;
      b.appendChild(label);
      if (self) {
        var you = document.createElement('span');
        you.className = 'you';
        you.textContent = 'you';
        b.appendChild(you);
      } else {
        b.title = 'Send ' + m.name + ' a direct message';
        b.addEventListener('click', function () { selectDm(m); });
      }
      li.appendChild(b);
      els.users.appendChild(li);
    });
  }

  function renderTyping() {
    var names = Array.from(state.typers.keys());
    var text = '';
    if (names.length === 1) text = names[0] + ' is typing…';
    else if (names.length === 2) text = names[0] + ' and ' + names[1] + ' are typing…';
    else if (names.length > 2) text = 'Several people are typing…';
    els.typing.textContent = text;
    els.typing.dataset.names = names.join(',');
  }

  function clearTyping(name) {
    if (name === undefined) {
      state.typers.forEach(function (t) { clearTimeout(t); });
      state.typers.clear();
    } else if (state.typers.has(name)) {
      clearTimeout(state.typers.get(name));
      state.typers.delete(name);
    }
    renderTyping();
  }

  function renderJoined() {
    els.app.dataset.joined = String(state.joined);
    els.me.hidden = !state.joined;
    els.me.textContent = '';
    if (state.joined) {
      els.me.appendChild(document.createTextNode('signed in as '));
      var b = document.createElement('b');
      b.textContent = state.name;
      els.me.appendChild(b);
    }
    els.leave.disabled = !state.joined;
    els.messageInput.disabled = !state.joined;
    els.send.disabled = !state.joined;
  }

  function selectDm(member) {
    if (member && state.dm && state.dm.id === member.id) member = null;
    state.dm = member ? { id: member.id, name: member.name } : null;
    els.dmTarget.hidden = !state.dm;
    els.dmTargetName.textContent = state.dm ? state.dm.name : '';
    renderUsers();
    renderRoom();
    if (state.dm) els.messageInput.focus();
  }

  function applyRoster(res) {
    state.room = res.room;
    state.members = Array.isArray(res.members) ? res.members.slice() : [];
    if (state.dm && !state.members.some(function (m) { return m.id === state.dm.id; })) {
      selectDm(null);
    }
    renderRoom();
    renderUsers();
  }

  // ---- actions ---------------------------------------------------------

  function join() {
    var wantedRoom = state.room;
    state.joined = false;
    socket.emit('join', state.name, function (res) {
      if (!res || res.error || !res.room) {
        els.joinError.textContent = (res && res.error) || 'Could not join';
        state.name = null;
        renderJoined();
        return;
      }
      els.joinError.textContent = '';
      state.joined = true;
      applyRoster(res);
      renderJoined();
      els.messageInput.focus();
      // After a reconnect, go back to the room we were in.
      if (wantedRoom && wantedRoom !== res.room) switchRoom(wantedRoom);
    });
  }

  function switchRoom(room) {
    room = String(room || '').trim();
    if (!state.joined || !room || room === state.room) return;
    socket.emit('switch room', room, function (res) {
      if (!res || res.error || !res.room) {
        addNotice('info', (res && res.error) || 'Could not switch rooms');
        return;
      }
      clearTyping();
      applyRoster(res);
      addNotice('room', 'You are now in #' + res.room);
    });
  }

  function sendMessage(text) {
    if (state.dm) {
      var to = state.dm;
      socket.emit('dm', { to: to.id, msg: text }, function (res) {
        if (res && res.ok) {
          addMessage({ kind: 'dm', direction: 'out', name: to.name, avatarName: state.name,
                       label: 'to ' + to.name, tag: 'DM', text: text, ts: Date.now() });
        } else {
          addNotice('info', to.name + ' is not reachable: the message was not sent');
        }
      });
      return;
    }
    socket.emit('chat', { msg: text }, function (res) {
      if (!res || !res.ok) addNotice('info', 'Message not sent' + (res && res.error ? ': ' + res.error : ''));
    });
  }

  // ---- DOM events ------------------------------------------------------

  els.joinForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var name = els.nameInput.value.trim();
    if (!name) {
      els.joinError.textContent = 'Please enter a name';
      els.nameInput.focus();
      return;
    }
    state.name = name;
    state.room = null;
    state.leaving = false;
    els.joinError.textContent = '';
    if (socket.connected) join();
    else socket.connect(); // the `connect` handler joins
  });

  els.leave.addEventListener('click', function () {
    if (!state.joined) return;
    state.leaving = true;
    socket.emit('leave', function () {});
  });

  els.roomForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var room = els.roomInput.value.trim();
    if (!room) return;
    els.roomInput.value = '';
    switchRoom(room);
  });

  els.roomList.addEventListener('click', function (e) {
    var link = e.target.closest('.room-link');
    if (link) switchRoom(link.dataset.room);
  });

  els.dmCancel.addEventListener('click', function () { selectDm(null); });

  els.chatForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var text = els.messageInput.value;
    if (!state.joined || !text.trim()) return;
    els.messageInput.value = '';
    state.lastTypingSent = 0;
    sendMessage(text);
  });

  els.messageInput.addEventListener('input', function () {
    if (!state.joined || state.dm || !els.messageInput.value) return;
    var now = Date.now();
    if (now - state.lastTypingSent >= TYPING_SEND_EVERY) {
      state.lastTypingSent = now;
      socket.emit('typing');
    }
  });

  // ---- socket events ---------------------------------------------------

  socket.on('connect', function () {
    setStatus('connected', 'connected');
    if (!state.name) return;
    // Recovered: the server still has us in our room under the same id, and
    // what we missed has just been shown. Joining again would announce us to
    // the room a second time.
    if (socket.recovered && state.room) {
      state.joined = true;
      renderJoined();
      return;
    }
    join();
  });

  socket.on('disconnect', function (reason) {
    state.joined = false;
    clearTyping();
    if (state.unloading) {
      // Closed on purpose by `pagehide`: keep who we are for `pageshow`.
      setStatus('disconnected', 'disconnected');
    } else if (reason === 'io server disconnect' || reason === 'io client disconnect') {
      setStatus('disconnected', 'disconnected');
      if (state.leaving) {
        els.nameInput.value = state.name || '';
        addNotice('info', 'You left the chat');
      }
      state.name = null;
      state.room = null;
      state.members = [];
      state.leaving = false;
      selectDm(null);
      renderUsers();
      renderRoom();
    } else {
      setStatus('reconnecting', 'reconnecting…');
    }
    renderJoined();
  });

  socket.io.on('reconnect_attempt', function () { setStatus('reconnecting', 'reconnecting…'); });

  // Back online: try at once rather than at the end of the reconnection
  // back-off, which may outlast the server's recovery window.
  window.addEventListener('online', function () {
    if (socket.active && !socket.connected) socket.disconnect().connect();
  });

  // Closing the page is a goodbye, not a drop: saying so lets the room hear
  // of it now rather than when the server stops waiting for a recovery.
  window.addEventListener('pagehide', function () {
    if (!socket.connected) return;
    state.unloading = true;
    socket.disconnect();
  });

  // Restored from the back/forward cache: connect again (`connect` joins).
  window.addEventListener('pageshow', function (e) {
    if (!e.persisted || !state.unloading) return;
    state.unloading = false;
    socket.connect();
  });
  socket.on('connect_error', function () {
    if (!socket.active) setStatus('disconnected', 'disconnected');
  });

  socket.on('join', function (ev) {
    if (!ev || typeof ev.name !== 'string') return;
    addNotice('join', ev.name + ' joined #' + ev.room);
    if (ev.room === state.room && ev.id && ev.id !== socket.id &&
        !state.members.some(function (m) { return m.id === ev.id; })) {
      state.members.push({ id: ev.id, name: ev.name });
      state.members.sort(function (a, b) {
        return a.name < b.name ? -1 : a.name > b.name ? 1 : (a.id < b.id ? -1 : 1);
      });
      renderUsers();
    }
  });

  socket.on('leave', function (ev) {
    if (!ev || typeof ev.name !== 'string') return;
    addNotice('leave', ev.name + ' left #' + ev.room);
    clearTyping(ev.name);
    if (ev.room === state.room && ev.id) {
      state.members = state.members.filter(function (m) { return m.id !== ev.id; });
      if (state.dm && state.dm.id === ev.id) selectDm(null);
      renderUsers();
    }
  });

  socket.on('chat', function (ev) {
    if (!ev || typeof ev.msg !== 'string') return;
    clearTyping(ev.name);
    addMessage({ kind: 'chat', name: ev.name, room: ev.room, text: ev.msg, ts: ev.ts,
                 own: ev.id ? ev.id === socket.id : ev.name === state.name });
  });

  socket.on('typing', function (ev) {
    if (!ev || typeof ev.name !== 'string') return;
    if (state.typers.has(ev.name)) clearTimeout(state.typers.get(ev.name));
    state.typers.set(ev.name, setTimeout(function () { clearTyping(ev.name); }, TYPING_SHOW_FOR));
    renderTyping();
  });

  socket.on('dm', function (ev) {
    if (!ev || typeof ev.msg !== 'string') return;
    addMessage({ kind: 'dm', direction: 'in', name: ev.from, label: 'from ' + ev.from, tag: 'DM',
                 text: ev.msg, ts: ev.ts });
  });

  // The Socket.IO tutorial's broadcast, sent by pages like /classic.html.
  socket.on('chat message', function (text) {
    if (typeof text !== 'string') return;
    addMessage({ kind: 'broadcast', name: 'everyone', tag: 'all', label: 'broadcast', text: text });
  });

  renderJoined();
  renderRoom();
})();
