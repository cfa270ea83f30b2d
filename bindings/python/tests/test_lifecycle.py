"""Starting, stopping, freeing and exiting: no leaked threads or file
descriptors, clean Ctrl-C, and an interpreter that exits with a running
server without hanging or crashing."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest
import socketio

import iobus
from conftest import fd_count, thread_count, wait_for


def connect(port: int) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=5)
    return client


def test_start_stop_cycles_leave_no_threads_or_fds():
    server = iobus.Server()
    server.on("echo", lambda sid, x: x)
    # Warm-up: the client library keeps some state after its first use.
    server.start()
    client = connect(server.port)
    client.call("echo", 1, timeout=5)
    client.disconnect()
    server.stop()
    time.sleep(0.2)
    threads, fds = thread_count(), fd_count()
    for i in range(5):
        server.start()
        assert server.running
        client = connect(server.port)
        assert client.call("echo", i, timeout=5) == i
        client.disconnect()
        server.stop()
        assert not server.running
        assert server.port is None
    time.sleep(0.2)
    assert thread_count() <= threads
    assert fd_count() <= fds
    server.close()
    server.close()  # twice is fine


def test_servers_freed_and_collected_leave_nothing_behind():
    gc.collect()
    threads, fds = thread_count(), fd_count()
    for _ in range(5):
        with iobus.Server() as server:
            assert server.running
            client = connect(server.port)
            client.disconnect()
    dropped = iobus.Server()
    dropped.on("x", lambda sid: None)
    ref = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert ref() is None
    time.sleep(0.2)
    assert thread_count() <= threads
    assert fd_count() <= fds


def test_an_idle_server_does_not_poll():
    import resource

    with iobus.Server() as server:
        client = connect(server.port)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        before = usage.ru_utime + usage.ru_stime
        time.sleep(1.0)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        assert usage.ru_utime + usage.ru_stime - before < 0.2
        client.disconnect()


def test_callbacks_stay_alive_for_the_servers_lifetime():
    server = iobus.Server()

    def register() -> None:
        # Handlers created here have no other reference than the server's.
        server.on("a", lambda sid: "a")
        server.on("disconnect", lambda sid, reason: None)

    register()
    gc.collect()
    with server.start():
        client = connect(server.port)
        gc.collect()
        assert client.call("a", timeout=5) == "a"
        client.disconnect()


def test_a_running_server_stays_alive_without_references():
    port_box = []

    def start() -> None:
        server = iobus.Server()
        server.on("alive", lambda sid: True)
        server.start()
        port_box.append(server.port)

    start()
    gc.collect()
    client = connect(port_box[0])
    assert client.call("alive", timeout=5) is True
    client.disconnect()
    # Stop it through the exit hook's own path.
    from iobus import _lifecycle

    for server in list(_lifecycle._running):
        if server.port == port_box[0]:
            server.close()


def test_stop_runs_disconnect_handlers_and_fails_pending_calls():
    server = iobus.Server()
    reasons = []
    server.on("disconnect", lambda sid, reason: reasons.append(reason))
    server.start()
    client = connect(server.port)
    client.on("hang", lambda: time.sleep(3))
    failures = []

    def caller() -> None:
        try:
            server.call("hang", to=client.get_sid(), timeout=10)
        except (iobus.DisconnectedError, iobus.TimeoutError) as exc:
            failures.append(type(exc).__name__)

    t = threading.Thread(target=caller)
    t.start()
    time.sleep(0.2)
    server.stop()
    t.join(5)
    assert failures == ["DisconnectedError"]
    assert reasons == ["server shutting down"]
    server.close()
    client.disconnect()


def test_stop_from_a_handler():
    server = iobus.Server()
    stopped = threading.Event()

    @server.event
    def halt(sid):
        server.stop()
        stopped.set()
        return "halting"

    server.start()
    client = connect(server.port)
    client.emit("halt")
    assert stopped.wait(5)
    wait_for(lambda: not server.running)
    client.disconnect()
    server.start()  # and it starts again
    client = connect(server.port)
    client.disconnect()
    server.close()


def test_serve_forever_returns_after_stop():
    server = iobus.Server()
    threading.Timer(0.3, server.stop).start()
    start = time.monotonic()
    server.serve_forever(port=0)
    assert time.monotonic() - start < 5
    assert not server.running
    server.close()


def test_start_errors():
    server = iobus.Server()
    server.start()
    with pytest.raises(iobus.IobusError) as info:
        server.start()
    assert info.value.status == 7
    other = iobus.Server()
    with pytest.raises(iobus.IobusError):
        other.start(port=server.port)
    other.close()
    server.close()
    with pytest.raises(RuntimeError):
        server.start()


def run_script(code: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_ctrl_c_stops_serve_forever_cleanly():
    code = """
        import sys, threading, time
        import iobus
        server = iobus.Server()
        seen = []
        server.on("disconnect", lambda sid, reason: seen.append(reason))
        server.start()

        def announce():
            # Says "serving" once the main thread waits inside serve_forever.
            main = threading.main_thread().ident
            while True:
                frame, names = sys._current_frames().get(main), []
                while frame is not None:
                    names.append(frame.f_code.co_name)
                    frame = frame.f_back
                if "serve_forever" in names and "wait" in names:
                    print("serving", server.port, flush=True)
                    return
                time.sleep(0.01)

        threading.Thread(target=announce, daemon=True).start()
        server.serve_forever()
        print("stopped", seen, server.running, flush=True)
        server.close()
        """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving"), line
        client = connect(int(line.split()[1]))
        gone = threading.Event()
        client.on("disconnect", lambda *args: gone.set())
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - start < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped ['server shutting down'] False" in out
    assert "Traceback" not in err
    assert gone.wait(5)
    client.disconnect()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_interpreter_exit_with_a_running_server(flavour):
    sync_code = """
        import socketio, iobus, time
        server = iobus.Server()
        server.on("slow", lambda sid: time.sleep(0.3))
        server.start()
        client = socketio.Client(reconnection=False)
        client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"])
        client.emit("slow")
        time.sleep(0.1)
        print("exiting", flush=True)
        """
    async_code = """
        import asyncio, iobus
        import socketio
        async def main():
            server = iobus.AsyncServer()
            @server.event
            async def hi(sid):
                return "hi"
            await server.start()
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"])
            assert await client.call("hi") == "hi"
            print("exiting", flush=True)
            return server
        server = asyncio.run(main())
        """
    start = time.monotonic()
    result = run_script(sync_code if flavour == "sync" else async_code)
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout
    assert "Fatal" not in result.stderr and "Segmentation" not in result.stderr
    assert time.monotonic() - start < 15


def test_library_override_and_packaged_library():
    import importlib.metadata

    files = {str(f) for f in importlib.metadata.files("iobus") or []}
    # The wheel that was installed carried the library and the type marker.
    assert "iobus/libiobus.so" in files
    assert "iobus/py.typed" in files
    packaged = os.path.join(os.path.dirname(iobus.__file__), "libiobus.so")
    assert os.path.isfile(packaged)
    assert "site-packages" in iobus.__file__ or "dist-packages" in iobus.__file__
    env = dict(os.environ, IOBUS_LIBRARY=packaged)
    ok = subprocess.run([sys.executable, "-c", "import iobus; print(iobus.library_version())"],
                        env=env, capture_output=True, text=True, timeout=20)
    assert ok.returncode == 0 and ok.stdout.strip() == iobus.library_version()
    env["IOBUS_LIBRARY"] = "/nonexistent/libiobus.so"
    bad = subprocess.run([sys.executable, "-c", "import iobus"], env=env, capture_output=True, text=True,
                         timeout=20)
    assert bad.returncode != 0 and "IOBUS_LIBRARY" in bad.stderr


def _worker_policies() -> list[int]:
    """Scheduling policy (field 41 of /proc/<tid>/stat) of each iobus-worker thread."""
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() != "iobus-worker":
                    continue
            with open(f"/proc/self/task/{tid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out.append(int(rest[41 - 3]))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's")
@pytest.mark.parametrize("option, policy", [(None, 3), (True, 3), (False, 0)])
def test_batch_scheduling_option_sets_the_network_threads_policy(option: bool | None, policy: int):
    server = iobus.Server(worker_threads=2, batch_scheduling=option)
    server.start()
    try:
        assert wait_for(lambda: len(_worker_policies()) == 2, 5)
        assert _worker_policies() == [policy, policy]
    finally:
        server.stop()
        server.close()
    assert wait_for(lambda: _worker_policies() == [], 5)
