"""The control socket's request parsing and dispatch (dataplane/control.py)
on hostile input, with hypothesis: arbitrary bytes and JSON lines, requests
with the wrong shapes, handlers that fail.  Every line gets exactly one
well-formed reply ({"ok": true, "result": ...} or {"ok": false, "error":
...}), no exception escapes, and the connection goes on serving."""
import asyncio
import json
import os
import socket

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataplane import control
from dataplane.control import ControlServer, RequestError
from tests.unit.test_control import ServerThread, socket_dir  # noqa: F401 (a fixture)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def _async_echo(args):
    await asyncio.sleep(0)
    return args


def _raise(exc):
    def handler(args):
        raise exc
    return handler


HANDLERS = {
    "echo": lambda args: args,
    "async-echo": _async_echo,
    "refuse": _raise(RequestError("refused")),
    "crash": _raise(KeyError("bug")),
    "nan": lambda args: float("nan"),                 # not JSON: an internal error
    "unencodable": lambda args: {"set": {1, 2}},
    "deep": lambda args: json.loads("[" * 100 + "]" * 100) if not args else _deep(),
}


def _deep():
    value = []
    for _ in range(100_000):  # deeper than json.dumps can recurse
        value = [value]
    return value


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=10)
REQUESTS = st.fixed_dictionaries({}, optional={"command": st.sampled_from(sorted(HANDLERS)) | JSON, "args": JSON,
                                               "extra": JSON})
LINES = st.one_of(
    st.binary(max_size=200),
    REQUESTS.map(lambda r: json.dumps(r).encode()),
    REQUESTS.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
).map(lambda line: line.replace(b"\n", b" "))
DEEP = b"[" * 200_000  # under MAX_REQUEST, far over the decoder's recursion limit


def check_reply(reply):
    """One line, a JSON object that is an ok reply or an error reply."""
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    message = json.loads(reply)
    assert isinstance(message, dict)
    if message["ok"] is True:
        assert set(message) == {"ok", "result"}
    else:
        assert message["ok"] is False and set(message) == {"ok", "error"} and isinstance(message["error"], str)
    return message


@SETTINGS
@given(LINES)
@example(DEEP)
@example(b'{"command": "echo", "args": ' + b"[" * 100_000 + b"}")
def test_parse_returns_a_request_or_refuses_it(line):
    try:
        command, args = control._parse(line)
    except RequestError as e:
        assert str(e)
    else:
        assert isinstance(command, str) and isinstance(args, dict)


@SETTINGS
@given(LINES)
@example(DEEP)
@example(b'{"command": "deep", "args": {"x": 1}}')
@example(b'{"command": "nan"}')
def test_dispatch_gives_one_well_formed_reply(line):
    server = ControlServer("/nonexistent/never-bound.sock", HANDLERS)
    message = check_reply(asyncio.run(server._dispatch(line + b"\n")))
    if line.strip() == b'{"command": "nan"}':
        assert message["ok"] is False and "internal error" in message["error"]


def test_server_answers_every_line_and_keeps_serving(socket_dir):  # noqa: F811 (the fixture)
    path = os.path.join(socket_dir, "fuzz.sock")
    server = ServerThread(path, HANDLERS)
    try:
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(LINES, min_size=1, max_size=6))
        @example([DEEP, b"", b"\xff\xfe", b'{"command": "crash"}'])
        def one_connection(lines):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(30)
                client.connect(path)
                replies = client.makefile("rb")
                for line in lines:
                    client.sendall(line + b"\n")
                    check_reply(replies.readline())
                # The same connection still serves a good request.
                client.sendall(b'{"command": "echo", "args": {"n": 1}}\n')
                assert json.loads(replies.readline()) == {"ok": True, "result": {"n": 1}}

        one_connection()
    finally:
        server.close()
