"""vtepd's control socket: the server (asyncio, in vtepd's loop) and a small
synchronous client (vtepctl).

Protocol: newline-delimited JSON over a Unix stream socket.  Each request
line is an object {"command": NAME, "args": {...}} ("args" may be left out);
each gets exactly one reply line, {"ok": true, "result": ...} or
{"ok": false, "error": MESSAGE}, in order.  A client may send several
requests on one connection.

Every handler runs in vtepd's event loop, so handlers are serialized (a
coroutine handler only yields at its own awaits).  The server protects that
loop, which also keeps forwarding going, from its clients:

- a request line is at most MAX_REQUEST bytes: a longer one gets an error
  reply and the connection is closed;
- a request that has begun must be complete within "timeout" seconds, and
  a connection with no request in progress is closed after "idle_timeout";
- a reply that the client does not read within "timeout" seconds (the
  kernel's socket buffer stays full) drops the client instead of queueing
  more replies: what waits for a client is bounded by its socket buffer and
  the transport's high-water mark (64 KiB), and its requests by the reader's
  limit;
- at most "max_clients" connections at once; another one is told so and
  closed;
- clients take turns, one request each: a client that pipelines thousands
  of requests delays the others by one request at a time, not by all of its.

The socket is mode 0600 (made so before listen(), so there is no window in
which anyone else can connect): only root, or vtepd's user, may control the
daemon."""
import asyncio
import errno
import inspect
import json
import logging
import os
import socket
import stat
import time

log = logging.getLogger("vtepd.control")

MAX_REQUEST = 1 << 20  # bytes in one request line, newline included
REQUEST_TIMEOUT = 10.0  # seconds for the rest of a begun request, and for a client to read its reply
IDLE_TIMEOUT = 300.0  # seconds a connection may wait between requests
MAX_CLIENTS = 256
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1: Linux needs room for the NUL


class RequestError(Exception):
    """Raised by a handler for a bad request; the client gets the message as the error."""


class ControlError(Exception):
    """The daemon answered a request with an error; str() is its message."""


class ControlServer:
    """The control socket at "path", dispatching to "handlers": command name ->
    callable(args: dict) returning a JSON-able result, or a coroutine function."""

    def __init__(self, path, handlers, *, timeout=REQUEST_TIMEOUT, idle_timeout=IDLE_TIMEOUT,
                 max_clients=MAX_CLIENTS, max_request=MAX_REQUEST):
        # "timeout" and "idle_timeout" are seconds, or None for no limit.
        self.path = os.fspath(path)
        self.handlers = dict(handlers)
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self.max_request = max_request
        self._server = None
        self._inode = None  # (st_dev, st_ino) of the socket we bound: stop() removes only that one
        self._clients = set()  # connection tasks

    @property
    def connections(self):
        """The number of clients connected now."""
        return len(self._clients)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self):
        """Create the socket and accept connections.  Raises OSError if another
        daemon answers on "path", if "path" is something other than a socket,
        or if it cannot be created."""
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, f"control socket path is longer than {_SUN_PATH_MAX} bytes",
                          self.path)
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755)
            os.chmod(parent, 0o755)  # makedirs' mode is filtered by the umask
        await self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            # Before listen(): until then a connect() is refused, so nobody can slip in.
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            # The reader's limit is the line limit without the first byte, read on its own.
            self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                           limit=max(1, self.max_request - 2))
        except BaseException:
            sock.close()
            self._unlink_ours()
            raise
        log.info("control socket listening on %s", self.path)

    async def stop(self):
        """Stop accepting, drop every client and remove the socket file.  Idempotent."""
        if self._server is not None:
            self._server.close()
            self._server = None
        clients, self._clients = list(self._clients), set()
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        self._unlink_ours()

    async def _remove_stale(self):
        """Refuse if a live daemon answers on our path; remove a socket nobody answers on."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, "exists and is not a socket; not replacing it", self.path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            async with asyncio.timeout(1.0):
                await asyncio.get_running_loop().sock_connect(probe, self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("removing stale control socket %s", self.path)
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return
        except TimeoutError:
            pass  # connect() pending: its backlog is full, so something is listening
        finally:
            probe.close()
        raise OSError(errno.EADDRINUSE, "another vtepd is already answering on this control socket",
                      self.path)

    def _unlink_ours(self):
        if self._inode is None:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._inode = None

    # -- one connection -----------------------------------------------------------------------

    async def _serve(self, reader, writer):
        task = asyncio.current_task()
        crowded = len(self._clients) >= self.max_clients
        self._clients.add(task)
        try:
            if crowded:
                log.warning("control: refusing a client: %d connections already", self.max_clients)
                await self._send(writer, _error(f"too many control connections (at most {self.max_clients})"))
                return
            while True:
                line = await self._read_request(reader, writer)
                if line is None:
                    break
                if not await self._send(writer, await self._dispatch(line)):
                    break
                # Take turns: a request already buffered is read, answered and its
                # reply written without yielding, so a client pipelining thousands
                # would hold the loop (other clients, netlink, ageing) till the last.
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # stop(): the connection ends here
        except Exception:  # a bug here must not take the loop down with it
            log.exception("control: connection failed")
        finally:
            self._clients.discard(task)
            # close() would wait for a reply the client is not reading to be flushed: abort instead.
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()
            else:
                writer.close()

    async def _read_request(self, reader, writer):
        """The next request line, or None when the connection is over (EOF,
        timeout, or a request too long, which has been answered)."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                first = await reader.readexactly(1)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None  # EOF between requests: the normal end
        except TimeoutError:
            log.debug("control: closing a connection idle for %g s", self.idle_timeout)
            return None
        if first == b"\n":
            return first
        try:
            async with asyncio.timeout(self.timeout):
                return first + await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            return first + e.partial  # the last request had no newline: answer it all the same
        except asyncio.LimitOverrunError:
            await self._send(writer, _error(f"request longer than {self.max_request} bytes"))
            return None
        except TimeoutError:
            log.info("control: dropping a client whose request was incomplete after %g s", self.timeout)
            return None
        except ConnectionError:
            return None

    async def _send(self, writer, reply):
        """Write one reply line; False if the client is gone or does not read."""
        try:
            writer.write(reply)
            async with asyncio.timeout(self.timeout):
                await writer.drain()
            return True
        except TimeoutError:
            log.info("control: dropping a client that has not read its reply for %g s", self.timeout)
        except ConnectionError:
            pass
        return False

    async def _dispatch(self, line):
        """The encoded reply to one request line."""
        try:
            command, args = _parse(line)
        except RequestError as e:
            return _error(str(e))
        handler = self.handlers.get(command)
        if handler is None:
            return _error(f"unknown command {command!r}")
        try:
            result = handler(args)
            if inspect.isawaitable(result):
                result = await result
            return _encode({"ok": True, "result": result})
        except RequestError as e:
            return _error(str(e))
        except Exception as e:
            log.exception("control: command %r failed", command)
            return _error(f"internal error: {type(e).__name__}: {e}")


def _parse(line):
    """(command, args) of a request line, or RequestError."""
    try:
        text = line.decode("utf-8")  # json.loads(bytes) would also guess UTF-16 and UTF-32
    except UnicodeDecodeError:
        raise RequestError("request is not UTF-8") from None
    try:
        request = json.loads(text)
    except ValueError as e:
        raise RequestError(f"request is not JSON: {e}") from None
    except RecursionError:  # the parser recurses per nesting level: "[[[[..." must not end the connection
        raise RequestError("request is nested too deeply") from None
    if not isinstance(request, dict):
        raise RequestError('request must be a JSON object {"command": ..., "args": {...}}')
    extra = sorted(set(request) - {"command", "args"})
    if extra:
        raise RequestError(f"unknown field(s) in request: {', '.join(extra)}")
    command = request.get("command")
    if not isinstance(command, str):
        raise RequestError('request needs "command", a string')
    args = request.get("args", {})
    if not isinstance(args, dict):
        raise RequestError('"args" must be a JSON object')
    return command, args


def _encode(reply):
    # allow_nan=False: NaN and Infinity are not JSON; a handler returning them gets an internal error.
    return json.dumps(reply, allow_nan=False, separators=(",", ":")).encode() + b"\n"


def _error(message):
    return _encode({"ok": False, "error": message})


# -- the client ------------------------------------------------------------------------------------

def request(path, command, args=None, timeout=5.0):
    """Send one request to vtepd at "path" and return its result.

    Raises ControlError with the daemon's message for an error reply, and
    OSError naming "path" when vtepd cannot be reached or does not answer
    within "timeout" seconds (in all)."""
    path = os.fspath(path)
    line = json.dumps({"command": command, "args": {} if args is None else args}).encode() + b"\n"
    deadline = _Deadline(timeout)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(deadline.left())
            sock.connect(path)
            sock.settimeout(deadline.left())
            try:
                sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # vtepd may have answered (e.g. "too many connections") and closed first: read that
            chunks = []
            while True:
                sock.settimeout(deadline.left())
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError(errno.ECONNRESET, "vtepd closed the connection without answering",
                                          path)
                chunks.append(chunk)
                if b"\n" in chunk:
                    break
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "cannot reach vtepd: no such socket (is vtepd running?)",
                                path) from None
    except ConnectionRefusedError:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "cannot reach vtepd: connection refused "
                                                         "(is vtepd running?)", path) from None
    except PermissionError:
        raise PermissionError(errno.EACCES, "cannot reach vtepd: permission denied (the socket is "
                                            "root's, mode 0600)", path) from None
    except TimeoutError:
        raise TimeoutError(errno.ETIMEDOUT, f"vtepd did not answer within {timeout:g} s", path) from None
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, f"cannot talk to vtepd: {e.strerror or e}", path) from None
    data = b"".join(chunks)
    return _result(data[: data.index(b"\n")], path)


def _result(line, path):
    try:
        reply = json.loads(line)
        ok = reply["ok"]
        if ok is True:
            return reply["result"]
        if ok is False and isinstance(reply["error"], str):
            raise ControlError(reply["error"])
    except (ValueError, KeyError, TypeError):
        pass
    raise ControlError(f"{path}: malformed reply from vtepd: {line[:200]!r}")


class _Deadline:
    def __init__(self, seconds):
        self._end = time.monotonic() + seconds

    def left(self):
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError()
        return left
