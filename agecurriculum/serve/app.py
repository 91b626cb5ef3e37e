"""The HTTP server of ``agecurriculum serve``: a Starlette app run by uvicorn (the ``serve`` extra).

Routes (the schema, with examples, is in docs/serve.rst):

- ``POST /predict``: images as multipart form files or one image as the body -> a JSON array with one
  ``predict --json`` object per image (:func:`~agecurriculum.inference.results.results_json`);
- ``GET /health``: ``{"status": "ok", ...}`` with the queue and the counts served;
- ``GET /model``: the model's bins, preprocessing, versions and model card summary;
- ``GET /``: the web page (``static/index.html``, its script and style sheet under ``/static/``).

Every error is JSON, ``{"error": "one line"}``, with a 4xx status for what the client sent (503 when the queue is
full); no traceback ever reaches a client. Photos stay in memory for the time of their request: nothing is written
to disk, and nothing is logged (uvicorn's access log is off); the server keeps counts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agecurriculum.inference import Predictor
from agecurriculum.inference.results import results_json
from agecurriculum.serve.batcher import Batcher
from agecurriculum.serve.limits import ServeLimits
from agecurriculum.serve.model_info import model_info
from agecurriculum.serve.uploads import RequestError, parse_uploads

__all__ = ["STATIC_DIR", "base_url", "create_app", "listen", "make_server", "serving"]

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


def create_app(predictor: Predictor, release: Path, backend: str, limits: ServeLimits | None = None) -> Starlette:
    """The server for one loaded model.

    Args:
        predictor: the model, loaded once; the batching worker alone uses it.
        release: where it was loaded from (for ``GET /model``'s model card).
        backend: ``"torch"`` or ``"onnx"``, as ``GET /model`` reports it.
        limits: request, image and queue limits (:class:`~agecurriculum.serve.limits.ServeLimits`; None: its
            defaults).
    """
    limits = limits or ServeLimits()
    batcher = Batcher(predictor, limits)
    about = model_info(predictor, release, backend)
    state = {"active": 0, "busy": 0, "refused": 0}  # requests admitted now; 503s; other 4xx answers

    async def predict(request: Request) -> Response:
        if state["active"] >= limits.max_queue:
            state["busy"] += 1
            return _error(
                503,
                f"server busy: {limits.max_queue} request(s) already waiting or running; try again in a moment",
                headers={"Retry-After": "1"},
            )
        state["active"] += 1
        try:
            body = await _read_body(request, limits)
            uploads = parse_uploads(request.headers.get("content-type"), body, limits.max_images)
            results = await batcher.predict(uploads)
        except RequestError as err:
            state["refused"] += 1
            return _error(err.status, err.message)
        except ClientDisconnect:  # nobody is left to answer
            return Response(status_code=400)
        except RuntimeError as err:
            # The batch failed as a whole (out of memory, shutting down): the server's failure, not the client's.
            return _error(500, str(err))
        finally:
            state["active"] -= 1
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
    app.add_middleware(_SecurityHeaders)
    return app


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

    Access logging is off (it would record every client's address and request); uvicorn says only warnings.
    """
    config = uvicorn.Config(app, access_log=False, log_level="warning", lifespan="on", server_header=False)
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


async def _read_body(request: Request, limits: ServeLimits) -> bytes:
    """The whole body, refused (413) as soon as it exceeds the limit, or (408) when it takes too long to come."""
    limit = limits.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request too large: {declared} bytes > limit of {limit} bytes")

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # a chunked body has no Content-Length to check first
                raise RequestError(413, f"request too large: more than the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), limits.body_timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(408, f"request body not received within {limits.body_timeout_s:g} s") from None


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
