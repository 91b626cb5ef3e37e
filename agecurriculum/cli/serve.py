"""``agecurriculum serve``: the model behind an HTTP API and a web page, on this machine only unless told otherwise."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time

from agecurriculum.cli import CLIError
from agecurriculum.inference import DEFAULT_RELEASE_DIR, Predictor, resolve_release
from agecurriculum.inference.predictor import BACKENDS, default_backend
from agecurriculum.serve import INSTALL_HINT, ServeLimits, missing_extra

_DEFAULTS = ServeLimits()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the model over HTTP: a JSON API and a web page to drop photos on",
        description="Loads the model once and serves POST /predict (images in, the JSON of `predict --json` out), "
        "GET /health, GET /model and a web page at / that draws every face's box and label. Listens on "
        "127.0.0.1 (this machine only) unless --host says otherwise. Photos stay in memory for their request "
        f"only; nothing is stored or logged. Needs the serve extra: {INSTALL_HINT}. See docs/serve.rst.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only); 0.0.0.0 lets anyone who "
        "can reach this machine send photos: only on a network you trust",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0: any free port)")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients may reach the server by, besides localhost and IP addresses (repeatable; '*': "
        "any). Requests that name another host are refused, against DNS rebinding; on a non-loopback address "
        "they are only checked once a name is given",
    )
    parser.add_argument(
        "--model",
        metavar="DIR",
        help="release folder, or with --backend onnx an .onnx file (default: the installed model, "
        f"{DEFAULT_RELEASE_DIR})",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="run the network with PyTorch or ONNX Runtime, as for `predict` (default: auto)",
    )
    parser.add_argument("--device", default="cpu", help="where the network runs: cpu, cuda, ... (default: cpu)")
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="test-time flip averaging (default: on; as predict --flip); --no-flip runs each face once",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="threads decoding photos and finding faces (default: one per CPU core)",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=_DEFAULTS.max_request_bytes,
        metavar="N",
        help=f"largest request body (413 beyond; default: {_DEFAULTS.max_request_bytes} = "
        f"{_DEFAULTS.max_request_bytes // 2**20} MiB)",
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=_DEFAULTS.max_images,
        metavar="N",
        help=f"most images in one request (413 beyond; default: {_DEFAULTS.max_images})",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=_DEFAULTS.max_pixels,
        metavar="N",
        help=f"most pixels of one image; a larger one is that image's error (default: {_DEFAULTS.max_pixels})",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=_DEFAULTS.max_queue,
        metavar="N",
        help="most prediction requests waiting or running at once; one more gets 503 at once "
        f"(default: {_DEFAULTS.max_queue})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=_DEFAULTS.max_connections,
        metavar="N",
        help=f"most connections open at once; one more gets 503 and is closed (default: {_DEFAULTS.max_connections})",
    )
    parser.add_argument(
        "--batch-images",
        type=int,
        default=_DEFAULTS.batch_images,
        metavar="N",
        help="requests arriving together are predicted in one batch of up to N images "
        f"(default: {_DEFAULTS.batch_images})",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=_DEFAULTS.batch_wait_ms,
        metavar="MS",
        help=f"how long a batch waits for more requests (default: {_DEFAULTS.batch_wait_ms:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command until interrupted; returns the exit status."""
    missing = missing_extra()
    if missing:
        raise CLIError(f"the serve extra is not installed (no {', '.join(missing)}): {INSTALL_HINT}")
    # Lazy: the serve extra's packages are optional; every other command works without them.
    from agecurriculum.serve.app import base_url, create_app, listen, make_server

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be 0-65535, got {args.port}")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    try:
        limits = ServeLimits(
            max_request_bytes=args.max_request_bytes,
            max_images=args.max_images,
            max_pixels=args.max_pixels,
            max_queue=args.max_queue,
            batch_images=args.batch_images,
            batch_wait_ms=args.batch_wait_ms,
            max_connections=args.max_connections,
        )
    except ValueError as err:
        raise CLIError(f"--{str(err).replace('_', '-')}") from None
    sock = listen(args.host, args.port)  # before the model loads: a port in use fails at once
    try:
        start = time.perf_counter()
        release = resolve_release(args.model)
        backend = default_backend(args.device, release) if args.backend == "auto" else args.backend
        predictor = Predictor.from_release(
            release, backend=backend, device=args.device, workers=args.workers, flip=args.flip
        )
        app = create_app(predictor, release, backend, limits, allowed_hosts=args.allowed_host)
        print(
            f"agecurriculum serve: {predictor.release.architecture} ({backend}) loaded in "
            f"{time.perf_counter() - start:.1f} s; open {base_url(sock)}/ (Ctrl-C stops)",
            file=sys.stderr,
        )
        host = sock.getsockname()[0]
        if not ipaddress.ip_address(host).is_loopback:
            print(
                f"agecurriculum serve: warning: listening on {host}: anyone who can reach this machine can send "
                "photos to it",
                file=sys.stderr,
            )
        make_server(app).run(sockets=[sock])
    finally:
        sock.close()
    return 0
