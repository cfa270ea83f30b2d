"""The bench contract served by python-socketio on aiohttp, on namespace `/`:
`join` (room, ack) -> join the room and ack with no arguments;
`broadcast` (room, data) -> emit `msg` (data) to everyone in the room;
`echo` (data, ack) -> ack (data).

Usage: python3 server.py <port>; prints a ready line once listening.
"""

import asyncio
import signal
import sys

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=None)


@sio.event
async def join(sid, room):
    await sio.enter_room(sid, room)
    # Returning nothing answers the ack with no arguments.


@sio.event
async def broadcast(sid, room, data):
    await sio.emit("msg", data, room=room)


@sio.event
async def echo(sid, data):
    return data


async def main(port):
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"python-socketio ready on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3100))
