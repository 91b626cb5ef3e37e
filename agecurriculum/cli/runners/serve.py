"""What ``agecurriculum serve`` does (its options: :mod:`agecurriculum.cli.serve`)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time

from agecurriculum.cli import CLIError
from agecurriculum.inference import Predictor, default_backend, resolve_release
from agecurriculum.serve import INSTALL_HINT, ServeLimits, missing_extra


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
