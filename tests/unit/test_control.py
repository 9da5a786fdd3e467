"""The control socket (dataplane/control.py): protocol, errors, and robustness
against clients that send garbage, too much, half a request, or never read.

A real ControlServer runs in its own thread's event loop, as in vtepd; the
clients are plain sockets and control.request()."""
import asyncio
import errno
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dataplane import control
from dataplane.control import ControlError, ControlServer, RequestError


class ServerThread:
    """A ControlServer on "path" in a background event loop; also used by test_vtepctl_daemon."""

    def __init__(self, path, handlers, **options):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="control-loop", daemon=True)
        self.thread.start()
        self.server = ControlServer(path, handlers, **options)
        try:
            self.call(self.server.start())
        except BaseException:
            self._stop_loop()
            raise

    def call(self, coroutine, timeout=5):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self):
        try:
            self.call(self.server.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def socket_dir():
    """A short directory: a Unix socket path must fit in 107 bytes, which pytest's tmp_path may not."""
    path = tempfile.mkdtemp(prefix="vtep-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_path(socket_dir):
    return os.path.join(socket_dir, "vtepd.sock")


class Recorder:
    """Handlers that record their requests."""

    def __init__(self):
        self.requests = []

    def handlers(self):
        async def slow(args):
            await asyncio.sleep(args.get("seconds", 0.05))
            return "slept"

        def record(name, answer):
            def handler(args):
                self.requests.append((name, args))
                return answer(args) if callable(answer) else answer
            return handler

        def bad(args):
            raise RequestError(f"no segment named {args.get('segment')!r}")

        def broken(args):
            raise ZeroDivisionError("division by zero")

        return {
            "echo": record("echo", lambda args: args),
            "version": record("version", {"version": "0.1.0"}),
            "slow": slow,
            "bad": bad,
            "broken": broken,
            "big": lambda args: "x" * args["size"],
            "not-json": lambda args: {1, 2},
            "nan": lambda args: float("nan"),
        }


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def server(sock_path, recorder):
    s = ServerThread(sock_path, recorder.handlers(), timeout=0.5, idle_timeout=2.0)
    yield s
    s.close()


def _connect(path, timeout=5):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def _lines(sock, n):
    """The next "n" reply lines from "sock", decoded."""
    data = b""
    while data.count(b"\n") < n:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def _closed(sock, within=3.0):
    """True if the server closes "sock" within "within" seconds (whatever it still sends is read)."""
    sock.settimeout(within)
    try:
        while sock.recv(1 << 16):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _wait(condition, within=3.0):
    end = time.monotonic() + within
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


# -- socket life cycle ----------------------------------------------------------------------------

def test_socket_is_0600_in_a_new_0755_directory(socket_dir, recorder):
    path = os.path.join(socket_dir, "run", "vtepd", "vtepd.sock")
    old_umask = os.umask(0o077)  # the directory is 0755 whatever the umask
    try:
        s = ServerThread(path, recorder.handlers())
    finally:
        os.umask(old_umask)
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
        assert control.request(path, "version") == {"version": "0.1.0"}
    finally:
        s.close()
    assert not os.path.exists(path)


def test_second_server_on_a_live_socket_is_refused(server, sock_path, recorder):
    with pytest.raises(OSError) as e:
        ServerThread(sock_path, recorder.handlers())
    assert e.value.errno == errno.EADDRINUSE
    assert sock_path in str(e.value) and "another vtepd" in str(e.value)
    assert control.request(sock_path, "version") == {"version": "0.1.0"}  # the first one is untouched


def test_stale_socket_is_replaced(sock_path, recorder):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)  # a socket file nobody listens on: what a killed vtepd leaves
    dead.close()
    s = ServerThread(sock_path, recorder.handlers())
    try:
        assert control.request(sock_path, "version") == {"version": "0.1.0"}
    finally:
        s.close()


def test_a_file_that_is_not_a_socket_is_left_alone(sock_path, recorder):
    with open(sock_path, "w") as f:
        f.write("precious")
    with pytest.raises(OSError, match="not a socket"):
        ServerThread(sock_path, recorder.handlers())
    with open(sock_path) as f:
        assert f.read() == "precious"


def test_stop_drops_clients_and_removes_only_its_own_socket(server, sock_path):
    client = _connect(sock_path)
    client.sendall(b'{"command": "version"}\n')
    assert _lines(client, 1) == [{"ok": True, "result": {"version": "0.1.0"}}]
    server.call(server.server.stop())
    assert _closed(client)
    assert not os.path.exists(sock_path)
    # A successor's socket at the same path survives a second stop().
    successor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    successor.bind(sock_path)
    server.call(server.server.stop())
    assert os.path.exists(sock_path)
    successor.close()


# -- protocol ---------------------------------------------------------------------------------------

def test_request_reaches_the_handler_with_its_args(server, sock_path, recorder):
    args = {"segment": "tenant-a", "mac": "02:00:00:00:01:01", "static": True}
    assert control.request(sock_path, "echo", args) == args
    assert control.request(sock_path, "echo") == {}
    assert recorder.requests == [("echo", args), ("echo", {})]


def test_several_requests_on_one_connection_are_answered_in_order(server, sock_path):
    with _connect(sock_path) as client:
        client.sendall(b"".join(json.dumps({"command": "echo", "args": {"n": i}}).encode() + b"\n"
                                for i in range(20)))
        assert _lines(client, 20) == [{"ok": True, "result": {"n": i}} for i in range(20)]
        client.sendall(b'{"command": "version", "args": {}}\n')  # and later, more
        assert _lines(client, 1) == [{"ok": True, "result": {"version": "0.1.0"}}]


def test_coroutine_handler_is_awaited(server, sock_path):
    assert control.request(sock_path, "slow", {"seconds": 0.01}) == "slept"


def test_request_error_is_an_error_reply(server, sock_path):
    with pytest.raises(ControlError) as e:
        control.request(sock_path, "bad", {"segment": "nope"})
    assert str(e.value) == "no segment named 'nope'"


def test_unknown_command(server, sock_path):
    with pytest.raises(ControlError, match="unknown command 'show-everything'"):
        control.request(sock_path, "show-everything")


def test_handler_exception_is_an_internal_error_and_logged(server, sock_path, caplog):
    with caplog.at_level(logging.ERROR, logger="vtepd.control"):
        with pytest.raises(ControlError) as e:
            control.request(sock_path, "broken")
        assert _wait(lambda: caplog.records)
    assert str(e.value) == "internal error: ZeroDivisionError: division by zero"
    record = caplog.records[0]
    assert record.name == "vtepd.control" and "broken" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is ZeroDivisionError  # with its traceback
    assert control.request(sock_path, "version") == {"version": "0.1.0"}  # still serving


@pytest.mark.parametrize("command", ["not-json", "nan"])
def test_result_that_is_not_json_is_an_internal_error(server, sock_path, command, caplog):
    with caplog.at_level(logging.CRITICAL, logger="vtepd.control"):
        with pytest.raises(ControlError, match="^internal error: "):
            control.request(sock_path, command)


@pytest.mark.parametrize("line, error", [
    (b"hello\n", "request is not JSON"),
    (b"\n", "request is not JSON"),
    (b"\xff\xfe{}\n", "not UTF-8"),
    (b"\xff\xfe{\x00}\x00\n", "not UTF-8"),  # UTF-16 that json.loads(bytes) would take
    (b"[1, 2]\n", "must be a JSON object"),
    (b'"show-fdb"\n', "must be a JSON object"),
    (b"{}\n", 'needs "command"'),
    (b'{"command": 7}\n', 'needs "command"'),
    (b'{"args": {}}\n', 'needs "command"'),
    (b'{"command": "echo", "args": [1]}\n', '"args" must be a JSON object'),
    (b'{"command": "echo", "args": null}\n', '"args" must be a JSON object'),
    (b'{"command": "echo", "id": 1, "verbose": true}\n', "unknown field(s) in request: id, verbose"),
    (b'{"command": "echo", "args": {}\n', "request is not JSON"),
    (b"[" * 100_000 + b"\n", "nested too deeply"),  # the parser's recursion, not the connection, gives up
])
def test_bad_envelope_is_an_error_reply_and_the_connection_goes_on(server, sock_path, recorder, line, error):
    with _connect(sock_path) as client:
        client.sendall(line + b'{"command": "version"}\n')
        bad, good = _lines(client, 2)
    assert bad["ok"] is False and error in bad["error"]
    assert good == {"ok": True, "result": {"version": "0.1.0"}}
    assert all(name == "version" for name, _ in recorder.requests)  # the bad line reached no handler


def test_last_request_without_newline_is_answered(server, sock_path):
    with _connect(sock_path) as client:
        client.sendall(b'{"command": "version"}')
        client.shutdown(socket.SHUT_WR)
        assert _lines(client, 1) == [{"ok": True, "result": {"version": "0.1.0"}}]


# -- robustness -------------------------------------------------------------------------------------

def _padded(size):
    """A valid request line of exactly "size" bytes, newline included."""
    line = b'{"command": "version"}'
    return line + b" " * (size - len(line) - 1) + b"\n"


def test_request_of_max_size_is_answered_and_one_byte_more_is_refused(server, sock_path):
    with _connect(sock_path) as client:
        client.sendall(_padded(control.MAX_REQUEST))
        assert _lines(client, 1) == [{"ok": True, "result": {"version": "0.1.0"}}]
    with _connect(sock_path) as client:
        client.sendall(_padded(control.MAX_REQUEST + 1))
        reply = _lines(client, 1)
        assert reply == [{"ok": False, "error": f"request longer than {control.MAX_REQUEST} bytes"}]
        assert _closed(client)
    assert control.request(sock_path, "version") == {"version": "0.1.0"}


def test_endless_line_is_refused_without_reading_it_all(server, sock_path):
    with _connect(sock_path) as client:
        sent = 0
        try:
            while sent < 64 * control.MAX_REQUEST:
                sent += client.send(b"x" * 65536)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        assert sent < 64 * control.MAX_REQUEST  # the server stopped reading
        reply = _lines(client, 1)
    assert reply == [{"ok": False, "error": f"request longer than {control.MAX_REQUEST} bytes"}]


def test_stalled_half_request_is_dropped_and_blocks_nobody(server, sock_path):
    stalled = _connect(sock_path)
    stalled.sendall(b'{"command": "ver')
    start = time.monotonic()
    assert control.request(sock_path, "version") == {"version": "0.1.0"}
    assert not _closed(stalled, within=0.05)  # answered while the other one still stalls...
    assert _closed(stalled, within=3.0)  # ...which is dropped after its 0.5 s
    assert time.monotonic() - start >= 0.5
    stalled.close()


def test_idle_connection_is_closed(sock_path, recorder):
    s = ServerThread(sock_path, recorder.handlers(), timeout=0.1, idle_timeout=0.5)
    try:
        idle = _connect(sock_path)
        start = time.monotonic()
        assert not _closed(idle, within=0.2)  # a client may take longer between requests than within one...
        idle.sendall(b'{"command": "version"}\n')
        assert _lines(idle, 1)[0]["ok"] is True
        assert _closed(idle, within=3.0)  # ...but not forever
        assert time.monotonic() - start >= 0.5
        idle.close()
    finally:
        s.close()


def test_client_that_never_reads_is_dropped_and_blocks_nobody(server, sock_path):
    hog = _connect(sock_path)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = json.dumps({"command": "big", "args": {"size": 4 << 20}}).encode() + b"\n"
    hog.sendall(request * 4)  # 16 MiB of replies it will not read
    start = time.monotonic()
    for _ in range(5):
        assert control.request(sock_path, "version") == {"version": "0.1.0"}
    assert time.monotonic() - start < 0.4
    assert _wait(lambda: server.server.connections == 0, within=3.0)  # dropped after 0.5 s
    # Dropped at once, not after its 4 MiB reply: a reply nobody reads must not hold the socket open.
    received = 0
    hog.settimeout(3)
    try:
        while chunk := hog.recv(1 << 16):
            received += len(chunk)
    except ConnectionResetError:
        pass
    assert received < 4 << 20
    hog.close()


def test_hundred_concurrent_clients_are_all_answered(server, sock_path):
    clients = [_connect(sock_path) for _ in range(100)]
    try:
        assert _wait(lambda: server.server.connections == 100)
        for i, client in enumerate(clients):  # a request each, with all connections open
            client.sendall(json.dumps({"command": "slow" if i % 2 else "echo", "args": {"n": i, "seconds": 0.01}})
                           .encode() + b"\n")
        for i, client in enumerate(clients):
            assert _lines(client, 1) == [{"ok": True, "result": "slept" if i % 2 else {"n": i, "seconds": 0.01}}]
    finally:
        for client in clients:
            client.close()
    with ThreadPoolExecutor(100) as pool:  # and 100 at once through the client
        results = list(pool.map(lambda i: control.request(sock_path, "echo", {"n": i}), range(100)))
    assert results == [{"n": i} for i in range(100)]


def test_a_pipelining_client_takes_turns_with_the_others(sock_path):
    order = []

    def hold(args):  # holds the loop, as a slow handler would, while B's request arrives
        order.append("hold")
        time.sleep(0.3)

    def echo(args):
        order.append(args["n"])
        return args

    s = ServerThread(sock_path, {"hold": hold, "echo": echo})
    try:
        with _connect(sock_path) as a, _connect(sock_path) as b:
            a.sendall(b'{"command": "hold"}\n' + b"".join(
                json.dumps({"command": "echo", "args": {"n": i}}).encode() + b"\n" for i in range(100)))
            assert _wait(lambda: order == ["hold"])
            b.sendall(b'{"command": "echo", "args": {"n": "b"}}\n')
            assert _lines(b, 1) == [{"ok": True, "result": {"n": "b"}}]
            assert len(_lines(a, 101)) == 101
    finally:
        s.close()
    assert order.index("b") < 10  # among A's 100 buffered requests, not after them all


def test_connections_beyond_the_limit_are_told_so(sock_path, recorder):
    s = ServerThread(sock_path, recorder.handlers(), max_clients=2)
    try:
        first, second = _connect(sock_path), _connect(sock_path)
        assert _wait(lambda: s.server.connections == 2)
        with pytest.raises(ControlError, match="too many control connections"):
            control.request(sock_path, "version")
        first.close()
        assert _wait(lambda: s.server.connections == 1)
        assert control.request(sock_path, "version") == {"version": "0.1.0"}
        second.close()
    finally:
        s.close()


# -- the client -----------------------------------------------------------------------------------

def test_client_reads_a_reply_sent_before_its_request(sock_path, monkeypatch):
    """A refusing vtepd answers and closes without reading: the client's write
    then fails (EPIPE), but the answer is waiting and must be what it reports."""
    refused = threading.Event()

    def refuse(server):
        conn, _ = server.accept()
        conn.send(b'{"ok":false,"error":"too many control connections (at most 2)"}\n')
        conn.close()
        refused.set()

    class LateSocket(socket.socket):
        def sendall(self, data):
            assert refused.wait(5)
            return super().sendall(data)

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(sock_path)
        server.listen()
        threading.Thread(target=refuse, args=(server,), daemon=True).start()
        monkeypatch.setattr(control.socket, "socket", LateSocket)
        with pytest.raises(ControlError, match="too many control connections"):
            control.request(sock_path, "version")


def test_client_no_socket_names_the_path(sock_path):
    with pytest.raises(FileNotFoundError) as e:
        control.request(sock_path, "version")
    assert e.value.filename == sock_path
    assert sock_path in str(e.value) and "is vtepd running?" in str(e.value)


def test_client_stale_socket_names_the_path(sock_path):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()
    with pytest.raises(ConnectionRefusedError) as e:
        control.request(sock_path, "version")
    assert e.value.filename == sock_path


def test_client_gives_up_on_a_silent_daemon(sock_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(sock_path)
        silent.listen()
        start = time.monotonic()
        with pytest.raises(TimeoutError) as e:
            control.request(sock_path, "version", timeout=0.2)
        assert time.monotonic() - start < 1
    assert e.value.filename == sock_path and "did not answer within 0.2 s" in str(e.value)


def test_client_daemon_closing_without_an_answer(sock_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rude:
        rude.bind(sock_path)
        rude.listen()

        def hang_up():
            conn, _ = rude.accept()
            conn.recv(100)
            conn.close()

        t = threading.Thread(target=hang_up)
        t.start()
        with pytest.raises(ConnectionError) as e:
            control.request(sock_path, "version")
        t.join()
    assert e.value.filename == sock_path and "without answering" in str(e.value)


@pytest.mark.parametrize("reply", [b"nonsense\n", b'{"ok": "yes"}\n', b'{"ok": false}\n', b"[]\n"])
def test_client_malformed_reply(sock_path, reply):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as odd:
        odd.bind(sock_path)
        odd.listen()

        def answer():
            conn, _ = odd.accept()
            conn.recv(100)
            conn.sendall(reply)
            conn.close()

        t = threading.Thread(target=answer)
        t.start()
        with pytest.raises(ControlError, match="malformed reply"):
            control.request(sock_path, "version")
        t.join()
