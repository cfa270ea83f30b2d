"""The chat example on the Python binding: the same event contract as
examples/chat/main.rs, served by ``iobus.Server``.

Usage: ``python3 examples/chat/chat.py [port]`` (or env ``PORT``; default
3000). Serves the page in ``examples/chat/public`` (env
``CHAT_PUBLIC_DIR`` for another) and the ``socket.io-client`` bundle under
``/socket.io/``. Needs the binding: ``pip install ./bindings/python``.

Events (client → server, then what the server sends):

| event | arguments | effect | ack |
| --- | --- | --- | --- |
| `join` | name | joins `lobby`; `join` {name, room, id} to the room | {room, users, members} |
| `chat` | {msg} | `chat` {name, msg, room, ts, id} to the room | {ok} |
| `switch room` | room | `leave` to the old room, `join` to the new one | {room, users, members} |
| `typing` | – | `typing` {name} to the room, sender excluded | – |
| `dm` | {to, msg} | `dm` {from, fromId, msg, ts} to socket `to` | {ok} |
| `leave` | – | `leave` {name, room, id} to the room, then disconnects | {ok} |
| `chat message` | text | `chat message` text to everyone | – |

``users`` is the sorted list of names in the room; ``members`` is
``[{id, name}]`` in the same order. A socket that disconnects without
``leave`` still produces the ``leave`` notice.

Connection state recovery is on (env ``CHAT_RECOVERY_MS``, default 30000; 0
turns it off): a page whose connection drops keeps its user for that long.
Coming back in time, it gets its id, room and every message it missed, and
the others see nothing of the drop; a DM sent to it meanwhile waits for it.
Only when it stays away longer does the room get its ``leave`` notice.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Set

import iobus

LOBBY = "lobby"
MAX_NAME = 32
MAX_ROOM = 40
MAX_MSG = 2000
# How much later than the server's own recovery deadline a user that has not
# come back is let go: by then no recovery of it can be under way.
EXPIRY_GRACE = 1.0
# Why a socket may come back (Socket.IO's list).
RECOVERABLE = {
    "transport error",
    "transport close",
    "forced close",
    "ping timeout",
    "server shutting down",
    "forced server close",
}


def recovery_window() -> float:
    """How long a dropped page keeps its user, in seconds (0: recovery off)."""
    raw = os.environ.get("CHAT_RECOVERY_MS", "").strip()
    return int(raw) / 1000 if raw.isdigit() else 30.0


@dataclass
class User:
    name: str
    room: str


KEEP = recovery_window()
sio = iobus.Server(
    static_dir=os.environ.get("CHAT_PUBLIC_DIR") or str(Path(__file__).resolve().parent / "public"),
    connection_state_recovery={"max_disconnection_duration": KEEP} if KEEP else None,
)
users: Dict[str, User] = {}
connected: Set[str] = set()
# Users whose connection dropped and may still recover, with their expiry.
away: Dict[str, threading.Timer] = {}
lock = threading.Lock()


def room_key(room: str) -> str:
    """The server room behind a chat room; the prefix keeps chat rooms apart
    from the rooms named after socket ids."""
    return "chat:" + room


def now_ms() -> int:
    return int(time.time() * 1000)


def clean(text: str, limit: int) -> str:
    """Trims, drops control characters, and caps the length."""
    kept = "".join(c for c in text.strip() if unicodedata.category(c) != "Cc")
    return kept[:limit].strip()


def text_arg(value: Any, limit: int) -> Optional[str]:
    if not isinstance(value, str):
        return None
    text = clean(value, limit)
    return text or None


def msg_arg(value: Any) -> Optional[str]:
    """The message of a `chat` or `dm` payload: {msg}, or a bare string."""
    if isinstance(value, dict):
        value = value.get("msg")
    if not isinstance(value, str):
        return None
    text = value[:MAX_MSG]
    return text if text.strip() else None


def error(message: str) -> Dict[str, Any]:
    return {"ok": False, "error": message}


def roster(room: str) -> Dict[str, Any]:
    with lock:
        members = sorted((u.name, sid) for sid, u in users.items() if u.room == room)
    return {
        "room": room,
        "users": [name for name, _ in members],
        "members": [{"id": sid, "name": name} for name, sid in members],
    }


def notice(sid: str, user: User) -> Dict[str, Any]:
    return {"name": user.name, "room": user.room, "id": sid}


def enter(sid: str, name: str, room: str) -> Dict[str, Any]:
    """Puts a socket into `room` (leaving its current one) and announces it."""
    with lock:
        previous = users.get(sid)
        users[sid] = User(name, room)
    if previous is not None and previous.room != room:
        sio.leave_room(sid, room_key(previous.room))
        sio.emit("leave", notice(sid, previous), to=room_key(previous.room))
    sio.enter_room(sid, room_key(room))
    sio.emit("join", notice(sid, User(name, room)), to=room_key(room))
    return roster(room)


def depart(sid: str) -> bool:
    """Removes a socket from the chat, telling its room."""
    with lock:
        user = users.pop(sid, None)
    if user is None:
        return False
    sio.leave_room(sid, room_key(user.room))
    sio.emit("leave", notice(sid, user), to=room_key(user.room))
    return True


@sio.event
def connect(sid: str, environ: Dict[str, Any], auth: Any) -> None:
    with lock:
        connected.add(sid)
        # A recovered socket has its id and rooms back: its user simply is too.
        timer = away.pop(sid, None) if environ.get("iobus.recovered") else None
    if timer is not None:
        timer.cancel()


@sio.on("join")
def on_join(sid: str, name: Any = None, *_: Any) -> Dict[str, Any]:
    name = text_arg(name, MAX_NAME)
    if name is None:
        return error("a name is required")
    return enter(sid, name, LOBBY)


@sio.on("switch room")
def on_switch_room(sid: str, room: Any = None, *_: Any) -> Dict[str, Any]:
    room = text_arg(room, MAX_ROOM)
    if room is None:
        return error("a room name is required")
    with lock:
        user = users.get(sid)
    if user is None:
        return error("join first")
    return enter(sid, user.name, room)


@sio.on("chat")
def on_chat(sid: str, payload: Any = None, *_: Any) -> Dict[str, Any]:
    with lock:
        user = users.get(sid)
    if user is None:
        return error("join first")
    msg = msg_arg(payload)
    if msg is None:
        return error("a message is required")
    message = {"name": user.name, "msg": msg, "room": user.room, "ts": now_ms(), "id": sid}
    sio.emit("chat", message, to=room_key(user.room))
    return {"ok": True}


@sio.on("typing")
def on_typing(sid: str, *_: Any) -> None:
    with lock:
        user = users.get(sid)
    if user is not None:
        sio.emit("typing", {"name": user.name}, to=room_key(user.room), skip_sid=sid)


@sio.on("dm")
def on_dm(sid: str, payload: Any = None, *_: Any) -> Dict[str, Any]:
    with lock:
        sender = users.get(sid)
    if sender is None:
        return error("join first")
    to = payload.get("to") if isinstance(payload, dict) else None
    if not isinstance(to, str):
        return error("a recipient is required")
    msg = msg_arg(payload)
    if msg is None:
        return error("a message is required")
    with lock:
        # Away for a moment: its own room keeps the DM for its recovery.
        known = to in connected or to in away
    if not known:
        return error("no such user")
    sio.emit("dm", {"from": sender.name, "fromId": sid, "msg": msg, "ts": now_ms()}, to=to)
    return {"ok": True}


@sio.on("leave")
def on_leave(sid: str, *_: Any) -> Dict[str, Any]:
    was_in = depart(sid)
    # Takes effect after the ack below is sent.
    sio.disconnect(sid)
    return {"ok": was_in}


@sio.on("chat message")
def on_chat_message(sid: str, *args: Any) -> None:
    sio.emit("chat message", tuple(args))


@sio.event
def disconnect(sid: str, reason: str) -> None:
    with lock:
        connected.discard(sid)
        if KEEP and reason in RECOVERABLE and sid in users:
            # It may come back: its user stays until then, or until expiry.
            timer = threading.Timer(KEEP + EXPIRY_GRACE, expire, (sid,))
            timer.daemon = True
            away[sid] = timer
            timer.start()
            return
    depart(sid)


def expire(sid: str) -> None:
    """The end of an absence: a user that has not come back leaves its room."""
    with lock:
        if away.get(sid) is not threading.current_thread():
            return
        del away[sid]
        user = users.pop(sid, None)
    if user is not None:
        sio.emit("leave", notice(sid, user), to=room_key(user.room))


def port() -> int:
    for raw in (sys.argv[1] if len(sys.argv) > 1 else None, os.environ.get("PORT")):
        if raw and raw.strip().isdigit():
            return int(raw.strip())
    return 3000


def main() -> None:
    # SIGTERM ends like Ctrl-C: serve_forever stops the server and returns.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    listen = port()
    try:
        sio.start("127.0.0.1", listen)
    except iobus.IobusError as exc:
        print(f"cannot listen on 127.0.0.1:{listen}: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"chat server on http://127.0.0.1:{sio.port}", flush=True)
    sio.serve_forever()
    sio.close()


if __name__ == "__main__":
    main()
