"""``agecurriculum serve``: the model behind an HTTP API and a web page, on this machine only unless told otherwise."""

from __future__ import annotations

import argparse

from agecurriculum.cli import Runner
from agecurriculum.inference.defaults import BACKENDS, DEFAULT_RELEASE_DIR
from agecurriculum.serve import INSTALL_HINT, ServeLimits

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
    parser.set_defaults(func=Runner("agecurriculum.cli.runners.serve", "run"))
