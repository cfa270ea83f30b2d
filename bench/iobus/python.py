"""The bench contract through iobus's Python binding, on namespace "/":
join (room, ack) -> join the room, ack with no arguments; broadcast (room,
data) -> emit msg (data) to everyone in the room; echo (data, ack) -> ack
(data). One network worker thread. Usage: python.py <port>."""

import signal
import sys

import iobus

port = int(sys.argv[1]) if len(sys.argv) > 1 else 3100
sio = iobus.Server(worker_threads=1)


@sio.on("join")
def join(sid, room):
    sio.enter_room(sid, room)
    return ()


@sio.on("broadcast")
def broadcast(sid, room, data=None):
    sio.emit("msg", data, room=room)


@sio.on("echo")
def echo(sid, data=None):
    return data


def stop(*_):
    sio.stop()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
sio.start(host="127.0.0.1", port=port)
print(f"bench python ready on 127.0.0.1:{port}", flush=True)
signal.signal(signal.SIGINT, stop)
while True:
    signal.pause()
