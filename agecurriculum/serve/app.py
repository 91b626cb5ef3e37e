"""The HTTP server of ``agecurriculum serve``: a Starlette app run by uvicorn (the ``serve`` extra).

Routes (the schema, with examples, is in docs/serve.rst):

- ``POST /predict``: images as multipart form files or one image as the body -> a JSON array with one
  ``predict --json`` object per image (:func:`~agecurriculum.inference.results.results_json`);
- ``GET /health``: ``{"status": "ok", ...}`` with the queue and the counts served;
- ``GET /model``: the model's bins, preprocessing, versions and model card summary;
- ``GET /``: the web page (``static/index.html``, its script and style sheet under ``/static/``).

Every error is JSON, ``{"error": "one line"}``, with a 4xx status for what the client sent (503 when the queue or
the connections are full); no traceback ever reaches a client. That includes what uvicorn answers itself when run by
:func:`make_server` (a request it cannot parse, a header timeout); an app mounted in another ASGI server answers
those as that server does. Photos stay in memory for the time of their request: nothing is written to disk, and
nothing is logged (uvicorn's access log is off); the server keeps counts only.

A request whose ``Host`` is not this server's (DNS rebinding: a web page reaching a server on 127.0.0.1 through a
name it controls) is refused, see :func:`host_allowed`; a request whose client disconnects is withdrawn before its
images are decoded (:class:`~agecurriculum.serve.batcher.Batcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from agecurriculum.inference import Predictor
from agecurriculum.inference.results import results_json
from agecurriculum.serve.batcher import Batcher
from agecurriculum.serve.limits import ServeLimits
from agecurriculum.serve.model_info import model_info
from agecurriculum.serve.uploads import RequestError, Upload, parse_uploads

__all__ = ["LOOPBACK_NAMES", "STATIC_DIR", "base_url", "create_app", "host_allowed", "listen", "make_server", "serving"]

T = TypeVar("T")

# The web page's files: package data, so the page works offline, with nothing fetched from elsewhere.
STATIC_DIR = Path(__file__).resolve().parent / "static"
# Sent with every response. The page loads only its own files (no CDN, no inline script) and shows the photos the
# user chose as blob: URLs; prediction results hold personal data, so no cache keeps them.
_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
#: Host names that mean this machine to every browser, besides loopback addresses: always accepted.
LOOPBACK_NAMES = frozenset({"localhost"})
# A request that carried at least this many bytes hands the memory back to the system once it is answered.
_RELEASE_AFTER_BYTES = 2**20


def create_app(
    predictor: Predictor,
    release: Path,
    backend: str,
    limits: ServeLimits | None = None,
    allowed_hosts: Collection[str] = (),
) -> Starlette:
    """The server for one loaded model.

    Args:
        predictor: the model, loaded once; the batching worker alone uses it.
        release: where it was loaded from (for ``GET /model``'s model card).
        backend: ``"torch"`` or ``"onnx"``, as ``GET /model`` reports it.
        limits: request, image and queue limits (:class:`~agecurriculum.serve.limits.ServeLimits`; None: its
            defaults).
        allowed_hosts: host names clients may reach the server by besides ``localhost`` and IP addresses (``*``:
            any); see :func:`host_allowed`.
    """
    limits = limits or ServeLimits()
    allowed = frozenset(name.strip().lower().rstrip(".") for name in allowed_hosts)
    batcher = Batcher(predictor, limits)
    about = model_info(predictor, release, backend)
    # requests admitted now; 503s; other 4xx answers; requests whose client went away before their answer
    state = {"active": 0, "busy": 0, "refused": 0, "abandoned": 0}

    async def predict(request: Request) -> Response:
        if state["active"] >= limits.max_queue:
            state["busy"] += 1
            return _error(
                503,
                f"server busy: {limits.max_queue} request(s) already waiting or running; try again in a moment",
                headers={"Retry-After": "1"},
            )
        state["active"] += 1
        received = [0]
        try:
            uploads = await _uploads(request, limits, received)
            # Withdrawn (its images not decoded) as soon as the client disconnects: a client that has gone must not
            # hold a place in the queue, nor the worker.
            results = await _unless_disconnected(request, batcher.predict(uploads))
            del uploads
        except RequestError as err:
            state["refused"] += 1
            return _error(err.status, err.message)
        except ClientDisconnect:  # nobody is left to answer
            state["abandoned"] += 1
            return Response(status_code=400)
        except RuntimeError as err:
            # The batch failed as a whole (out of memory, shutting down): the server's failure, not the client's.
            return _error(500, str(err))
        finally:
            state["active"] -= 1
            if received[0] >= _RELEASE_AFTER_BYTES:
                batcher.release_memory_soon()
        if all(r["error"] is not None for r in results):
            state["refused"] += 1
            first = results[0]["error"] if len(results) == 1 else f"none of the {len(results)} images can be used"
            return _error(422, f"no usable image: {first}", results=results)
        return Response(results_json(results), media_type="application/json", headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "queue": {"active": state["active"], "limit": limits.max_queue},
                "served": dict(batcher.counts),
                "busy": state["busy"],
                "refused": state["refused"],
                "abandoned": state["abandoned"],
            }
        )

    async def model(request: Request) -> Response:
        return JSONResponse(about)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/model", model, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error, Exception: _server_error}
    )
    # POST /predict/ would get a 307 with an empty body: a path with a trailing slash is a 404 (JSON) like any other.
    app.router.redirect_slashes = False
    app.add_middleware(_HostCheck, allowed=allowed)
    app.add_middleware(_SecurityHeaders)  # added last: outermost, so the host check's refusals get the headers too
    app.state.serve_limits = limits  # for make_server: the header timeout and the connection limit
    return app


def host_allowed(host: str | None, server: str | None, allowed: Collection[str] = ()) -> bool:
    """Whether a request may be answered, from its ``Host`` header: the check against DNS rebinding.

    A web page can reach a server on 127.0.0.1 through a name its author controls, resolved first to their own
    address and then to 127.0.0.1; the browser then sends that name as the ``Host``. So a request that arrived on a
    loopback address must name the server by a loopback name: ``localhost`` or a loopback address (any port). A
    request that arrived on another address (``--host 0.0.0.0``, a LAN address) is not checked unless
    ``allowed`` names hosts: then only IP addresses, ``localhost`` and those names are accepted.

    Args:
        host: the ``Host`` header (a name or address, with or without a port); None or empty is refused.
        server: the address the connection arrived on (the ASGI scope's ``server``), or None.
        allowed: host names accepted besides (lower case, no port); ``"*"`` accepts any.
    """
    if "*" in allowed:
        return True
    name = _host_name(host or "")
    if not name:
        return False
    if name in allowed or name in LOOPBACK_NAMES:
        return True
    address = _ip_address(name)
    local = _ip_address(server or "")
    if local is not None and local.is_loopback:
        return address is not None and address.is_loopback
    return not allowed or address is not None


def _host_name(host: str) -> str:
    """The name or address of a ``Host`` header, lower case, without port, brackets or a final dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [IPv6]:port
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.split(":")[0]
    return host.rstrip(".")


def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%")[0])  # without an IPv6 zone
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1, as a dual-stack socket reports an IPv4 client
    return address


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: one the system picks; read it from ``getsockname()``).

    Bound here rather than by uvicorn so that a port in use is one clear error before the server starts.

    Raises:
        OSError: the address cannot be used (in use, not this machine's, no permission); the message says which.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop (TIME_WAIT)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.setblocking(False)
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a listening socket (an IPv6 address in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: Starlette) -> uvicorn.Server:
    """A uvicorn server for ``app``; start it with ``server.run(sockets=[listen(host, port)])``.

    Access logging is off (it would record every client's address and request); uvicorn says only warnings. The
    server speaks HTTP/1.1 through uvicorn's h11 protocol with this server's additions (the app's
    :class:`~agecurriculum.serve.limits.ServeLimits` set them): its own refusals are JSON like the app's, request
    headers must arrive within ``header_timeout_s``, at most ``max_connections`` connections are open at once. No
    WebSocket.
    """
    limits = getattr(app.state, "serve_limits", None) or ServeLimits()
    # python-multipart logs a warning for every malformed form besides raising; the client's 400 says it already.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    protocol = type(
        "ServeProtocol",
        (_ServeProtocol,),
        {"header_timeout": limits.header_timeout_s, "max_connections": limits.max_connections},
    )
    config = uvicorn.Config(
        app, http=protocol, ws="none", access_log=False, log_level="warning", lifespan="on", server_header=False
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def serving(app: Starlette, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Runs ``app`` with uvicorn in a background thread while the ``with`` block runs (tests, notebooks).

    Args:
        app: from :func:`create_app`.
        host: address to listen on.
        port: TCP port; 0 (the default) takes a free one.
        timeout: seconds to wait for the server to start, and to stop.

    Yields:
        The server's base URL, e.g. ``"http://127.0.0.1:45678"``.

    Raises:
        OSError: the address cannot be used.
        RuntimeError: the server did not start within ``timeout``.
    """
    sock = listen(host, port)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="agecurriculum-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {host}:{port} did not start")
            time.sleep(0.01)
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


async def _uploads(request: Request, limits: ServeLimits, received: list[int]) -> list[Upload]:
    """The request's images; the body itself is dropped here, once the form's files are copied out of it.

    ``received[0]`` is set to the body's declared size before it is read (its buffer is allocated then; a client may
    still go away half-way), then to its size.
    """
    declared = _content_length(request)
    received[0] = declared if declared is not None and declared <= limits.max_request_bytes else 0
    body = await _read_body(request, limits)
    received[0] = len(body)
    return parse_uploads(request.headers.get("content-type"), body, limits.max_images)


def _content_length(request: Request) -> int | None:
    """The body's size that the ``Content-Length`` header declares, or None without one (a chunked body)."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


async def _read_body(request: Request, limits: ServeLimits) -> bytearray:
    """The whole body, refused (413) as soon as it exceeds the limit, or (408) when it takes too long to come.

    Read into one buffer, of the declared size when there is a ``Content-Length``: no second copy of the body.
    """
    limit = limits.max_request_bytes
    declared = _content_length(request)
    if declared is not None and declared > limit:
        raise RequestError(413, f"request too large: {declared} bytes > limit of {limit} bytes")

    async def read(body: bytearray) -> bytearray:
        if declared is None:  # chunked: no Content-Length to check first, so the body is counted as it comes
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise RequestError(413, f"request too large: more than the limit of {limit} bytes")
                body += chunk
            return body
        size = 0
        with memoryview(body) as view:
            async for chunk in request.stream():  # uvicorn holds the client to its Content-Length; others may not
                if size + len(chunk) > len(body):
                    raise RequestError(400, f"the body is longer than its Content-Length of {declared} bytes")
                view[size : size + len(chunk)] = chunk
                size += len(chunk)
        del body[size:]
        return body

    body = bytearray(declared or 0)
    try:
        return await asyncio.wait_for(read(body), limits.body_timeout_s)
    except BaseException as err:
        # Refused, timed out or the client gone: the buffer is freed now. The exception's traceback holds it, in a
        # reference cycle through wait_for's task that only the garbage collector would break.
        with contextlib.suppress(BufferError):
            body.clear()
        if isinstance(err, asyncio.TimeoutError):
            raise RequestError(408, f"request body not received within {limits.body_timeout_s:g} s") from None
        raise


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled as soon as the client disconnects (then :class:`ClientDisconnect` is raised).

    Called once the body is read: the only message the server can send after it is ``http.disconnect``.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()  # the handler itself cancelled, or the client gone: withdraws the request
    if task.done() and not task.cancelled():
        return task.result()
    raise ClientDisconnect()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's own refusals (404 unknown path, 405 wrong method) as JSON like every other error.
    assert isinstance(exc, HTTPException)
    message = {
        404: f"not found: {request.url.path}",
        405: f"method {request.method} not allowed for {request.url.path}",
    }.get(exc.status_code, exc.detail)
    return _error(exc.status_code, message, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # A bug of ours: the client gets one line, never the traceback (uvicorn still logs it on the server's stderr).
    return _error(500, f"internal server error ({type(exc).__name__})")


class _SecurityHeaders:
    """Adds :data:`_HEADERS` to every response (pure ASGI: no buffering of the body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _HostCheck:
    """Refuses (400, JSON) a request whose ``Host`` :func:`host_allowed` does not accept (pure ASGI)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        server = scope.get("server")
        if host_allowed(host, server[0] if server else None, self.allowed):
            await self.app(scope, receive, send)
            return
        shown = repr(host[:100]) if host else "none"
        message = (
            f"host {shown} not allowed: this server answers to localhost and loopback addresses "
            "(agecurriculum serve --allowed-host NAME accepts a name)"
        )
        await _error(400, message)(scope, receive, send)


def _raw_json(status: int, reason: bytes, message: str) -> bytes:
    """A whole HTTP/1.1 JSON error response that closes the connection, for answers outside any request cycle."""
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    head = [
        b"HTTP/1.1 %d %s" % (status, reason),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        *(name + b": " + value for name, value in _HEADERS),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class _ServeProtocol(H11Protocol):
    """uvicorn's h11 protocol, with JSON refusals, a header timeout and a connection limit (:func:`make_server`).

    uvicorn answers a request it cannot parse (``Content-Length: -5``, a malformed request line, headers over
    16 KiB) itself, in plain text; here in JSON. uvicorn has no timeout for the headers of a connection's first
    request, nor for those after a keep-alive answer once a byte of them came: here a connection that has not
    delivered its request headers ``header_timeout`` seconds after it opened (or after its last answer) is closed,
    with a 408 when part of a request came. A connection beyond ``max_connections`` gets 503 and is closed.
    """

    header_timeout = 10.0
    max_connections = 100
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            message = f"server busy: {self.max_connections} connections already open; try again in a moment"
            transport.write(_raw_json(503, b"Service Unavailable", message))
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers get the same time

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            {"error": "malformed HTTP request: its request line, headers or framing are invalid"}, separators=(",", ":")
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *_HEADERS,
        ]
        try:
            output = self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
            output += self.conn.send(h11.Data(data=body.encode()))
            output += self.conn.send(h11.EndOfMessage())
            self.transport.write(output)
        except h11.LocalProtocolError:  # an answer was already under way: the connection just closes
            pass
        self.transport.close()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its body has the app's own timeout; re-armed when answered
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:  # part of a request came, not all
            message = f"request headers not received within {self.header_timeout:g} s"
            self.transport.write(_raw_json(408, b"Request Timeout", message))
        self.transport.close()
