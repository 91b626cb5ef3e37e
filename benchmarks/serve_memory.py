"""Memory of ``agecurriculum serve`` over 500 requests that mix good, malformed and abandoned uploads (issue 30).

Starts the server in a subprocess on a free port (``python -m agecurriculum serve --port 0``, the default limits),
warms it up with 18 good requests (8 at a time), then sends 500 requests from 8 client threads and reads the server
process's peak and final resident memory from ``/proc/PID/status`` (``VmHWM``, reset after the warm-up, and
``VmRSS`` once the server has been idle for 3 s). It prints them against the stated bound of docs/serve.rst: the
memory after the warm-up plus :meth:`ServeLimits.memory_bound` for the server's ``--workers``. Linux only::

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/serve_memory.py

The 500 requests: first 8 raw uploads of about 30 MiB (random-noise PNGs, 10.6 Mpx) at once, then, shuffled, good
photos (scikit-image's astronaut and coffee, as the body or as forms of 2 and 4 files), many-pixel images at the
default ``--max-pixels`` (forms of two zero-filled 6300 x 6300 RGB PNGs, and of four 1000 x 39,700 16-bit grayscale
PNGs and 32-bit TIFFs, the costliest formats to decode), malformed requests (not an image, a 257-byte boundary, a
truncated form, a wrong content type, ``Content-Length: -5``, a foreign ``Host``), refused sizes (a declared 33 MiB
body) and abandoned uploads (the whole body sent and the connection closed at once; or closed half-way through a
20 MiB body). The table gives each kind's answers; "closed" is an abandoned one (no answer read). A request
answered 503 (the queue full: an abandoned request holds its place until the server sees its connection close) is
sent again after the ``Retry-After`` second, as a client should; the last column counts those 503s.

``--root DIR`` serves another checkout of the package (e.g. ``git archive`` of an older commit unpacked there): the
server runs with that folder first on ``PYTHONPATH`` and as its working directory, and the bound is still this
checkout's. ``--workers`` (default: one per core) and ``--backend`` (default: auto) are passed to the server.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from agecurriculum.inference.workers import default_workers
from agecurriculum.serve import ServeLimits

REPO = Path(__file__).resolve().parents[1]

MiB = 2**20
# Kinds shuffled after the 8 large uploads: (kind, how many). 8 + 492 = 500 requests.
MIX = [
    ("good: astronaut.jpg as the body", 150),
    ("good: form of astronaut.png + coffee.jpg", 90),
    ("good: form of 4 x astronaut.jpg", 40),
    ("many pixels: form of 2 x 6300x6300 RGB PNG", 6),
    ("many pixels: form of 2 x 16-bit PNG + 2 x 32-bit TIFF, 39.7 Mpx", 8),
    ("malformed: not an image", 25),
    ("malformed: 257-byte boundary", 25),
    ("malformed: truncated form", 25),
    ("malformed: Content-Type text/plain", 20),
    ("malformed: Content-Length -5", 20),
    ("malformed: Host evil.example", 20),
    ("refused: Content-Length 33 MiB", 15),
    ("abandoned: whole body, closed at once", 30),
    ("abandoned: closed after 5 of 20 MiB", 18),
]
LARGE = "large: ~30 MiB noise PNG as the body"


def encode(image: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=fmt, **options)
    return out.getvalue()


def form(files: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}"\r\n\r\n'.encode() + data + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def payloads() -> dict[str, bytes]:
    """The raw requests (request line, headers and body) of every kind, built once; ``{host}`` stands for the
    server's address."""
    astronaut_jpg = encode(skdata.astronaut(), "JPEG")
    astronaut_png = encode(skdata.astronaut())
    coffee = encode(skdata.coffee(), "JPEG")
    noise = encode(np.random.default_rng(0).integers(0, 256, (3200, 3300, 3), dtype=np.uint8), compress_level=1)
    rgb = encode(np.zeros((6300, 6300, 3), np.uint8))
    gray16 = encode(np.zeros((1000, 39_700), np.uint16))
    tiff32 = encode(np.zeros((1000, 39_700), np.int32), "TIFF", compression="tiff_deflate")

    def post(body: bytes, content_type: str, host: str = "{host}") -> bytes:
        head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        return f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body

    truncated, truncated_type = form([astronaut_png])
    return {
        LARGE: post(noise, "image/png"),
        "good: astronaut.jpg as the body": post(astronaut_jpg, "image/jpeg"),
        "good: form of astronaut.png + coffee.jpg": post(*form([astronaut_png, coffee])),
        "good: form of 4 x astronaut.jpg": post(*form([astronaut_jpg] * 4)),
        "many pixels: form of 2 x 6300x6300 RGB PNG": post(*form([rgb] * 2)),
        "many pixels: form of 2 x 16-bit PNG + 2 x 32-bit TIFF, 39.7 Mpx": post(*form([gray16, tiff32] * 2)),
        "malformed: not an image": post(b"these are not the pixels you are looking for\n" * 20, "image/png"),
        "malformed: 257-byte boundary": post(b"x" * 1000, f"multipart/form-data; boundary={'b' * 257}"),
        "malformed: truncated form": post(truncated[: len(truncated) // 2], truncated_type),
        "malformed: Content-Type text/plain": post(b"hello", "text/plain"),
        "malformed: Content-Length -5": b"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Length: -5\r\n\r\n",
        "malformed: Host evil.example": post(astronaut_jpg, "image/jpeg", host="evil.example"),
        "refused: Content-Length 33 MiB": (
            b"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
            % (33 * MiB)
        ),
        "abandoned: whole body, closed at once": post(astronaut_png, "image/png"),
        "abandoned: closed after 5 of 20 MiB": (
            b"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
            % (20 * MiB)
            + bytes(5 * MiB)
        ),
    }


def send(address: tuple[str, int], kind: str, data: bytes) -> str:
    """Sends one request; its status, ``closed`` for an abandoned one, or ``reset``/``no answer`` when the server
    closed the connection without one."""
    host = f"{address[0]}:{address[1]}".encode()
    data = data.replace(b"{host}", host, 1)
    with socket.create_connection(address, timeout=600) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole body was sent: the answer may still be there
        if kind.startswith("abandoned"):
            return "closed"
        try:
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    return "no answer"
                reply += chunk
        except ConnectionResetError:
            return "reset"
    return reply.split(b" ", 2)[1].decode()


def memory(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def start_server(root: Path, workers: int, backend: str, log: io.TextIOBase) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "agecurriculum", "serve", "--port", "0", "--workers", str(workers)]
    process = subprocess.Popen([*command, "--backend", backend], cwd=root, env=env, stderr=log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        log.seek(0)
        found = re.search(r"open http://127\.0\.0\.1:(\d+)/", log.read())
        if found:
            return process, int(found.group(1))
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server stopped:\n{log.read()}")
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("the server did not start within 300 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO, help="checkout whose package is served (default: this)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="the server's --workers")
    parser.add_argument("--backend", default="auto", help="the server's --backend (default: auto)")
    parser.add_argument("--clients", type=int, default=8, help="requests sent at once (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="order of the shuffled requests")
    parser.add_argument("--quick", action="store_true", help="one request of each kind (a check of the script)")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("reads /proc/PID/status: Linux only")

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    print("building the requests ...", flush=True)
    data = payloads()
    kinds = [kind for kind, count in MIX for _ in range(1 if args.quick else count)]
    random.Random(args.seed).shuffle(kinds)
    kinds = [LARGE] * (1 if args.quick else 8) + kinds
    answers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    busy: collections.Counter = collections.Counter()  # 503s (queue full), each sent again 1 s later

    with tempfile.TemporaryFile("w+") as log:
        process, port = start_server(args.root.resolve(), args.workers, args.backend, log)
        address = ("127.0.0.1", port)
        try:
            warm_up = ["good: astronaut.jpg as the body"] * 16 + ["good: form of 4 x astronaut.jpg"] * 2
            with concurrent.futures.ThreadPoolExecutor(8) as pool:  # batches of every size, as the run makes them
                assert set(pool.map(lambda kind: send(address, kind, data[kind]), warm_up)) == {"200"}, "warm-up"
            time.sleep(2)
            Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # the peak counts from here
            baseline = memory(process.pid)["VmRSS"]
            print(f"server pid {process.pid} on port {port}, --workers {args.workers}; {len(kinds)} requests ...")
            queue = list(reversed(kinds))
            lock = threading.Lock()

            def client() -> None:
                while True:
                    with lock:
                        if not queue:
                            return
                        kind = queue.pop()
                    answer = send(address, kind, data[kind])
                    while answer == "503":  # the queue is full: sent again after its Retry-After, as a client should
                        with lock:
                            busy[kind] += 1
                        time.sleep(1)
                        answer = send(address, kind, data[kind])
                    with lock:
                        answers[kind][answer] += 1

            began = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - began
            time.sleep(3)
            final = memory(process.pid)
            health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30).read().decode()
        finally:
            process.terminate()
            process.wait(30)
        log.seek(0)
        lines = log.read().splitlines()

    print(f"{len(kinds)} requests in {seconds:.0f} s, {args.clients} at a time\n")
    print("| requests | kind | answers | 503 first |")
    print("|---:|---|---|---:|")
    for kind in [LARGE, *(kind for kind, _ in MIX)]:
        shown = ", ".join(f"{status} x{n}" for status, n in sorted(answers[kind].items()))
        print(f"| {sum(answers[kind].values())} | {kind} | {shown} | {busy[kind]} |")
    bound = ServeLimits().memory_bound(args.workers) / MiB
    peak = final["VmHWM"]
    print(f"\nserver log ({len(lines)} lines, {sum('Traceback' in line for line in lines)} tracebacks):")
    for line, n in collections.Counter(lines).most_common():
        print(f"    {n} x {line}")
    print(f"GET /health afterwards: {health}")
    print(f"memory of the server (MiB): after the warm-up {baseline:.0f}, peak {peak:.0f}, final {final['VmRSS']:.0f}")
    verdict = "within it" if peak <= baseline + bound else "ABOVE IT"
    print(
        f"stated bound: {baseline:.0f} + {bound:.0f} (ServeLimits().memory_bound({args.workers})) = "
        f"{baseline + bound:.0f} MiB: the peak is {verdict}"
    )
    return 0 if peak <= baseline + bound else 1


if __name__ == "__main__":
    sys.exit(main())
