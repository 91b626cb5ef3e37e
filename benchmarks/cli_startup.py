"""Wall time and peak memory of ``agecurriculum`` commands that should answer at once (issue 29, point 3).

Each command runs ``--repeats`` times in a fresh ``python -m agecurriculum`` subprocess (stdout discarded); the
table gives the median and fastest wall seconds, the median CPU seconds (user + system: less sensitive than the wall
time to other work on the machine) and the median peak resident memory of the process (``ru_maxrss`` from
``os.wait4``, so each run's own peak)::

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/cli_startup.py --data ../shared/data

Commands: ``agecurriculum --help``, ``bins --help``, ``predict --help``, ``train --help``, ``serve --help`` and, with
``--data`` (default ``../shared/data`` beside the repository when it exists), ``bins --data DATA`` and ``predict
PHOTO`` (FairFace's ``val/1.jpg`` with the default model); on Linux also ``serve --port 0`` until it says the model
is loaded (its CPU and peak memory read from ``/proc`` then). Each command runs once untimed first, so the file cache
and the default model's ONNX export (made on first use) are warm. Targets: every help text under 0.5 s, ``bins
--data`` under 2 s and 300 MB.

``--root DIR`` measures another checkout of the package (e.g. a ``git worktree`` of an older commit): it runs with
that folder first on ``PYTHONPATH`` and as the working directory, and the script checks that the package imported is
the one under it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands(data: Path | None) -> list[tuple[str, list[str]]]:
    """``(label, arguments after "python -m agecurriculum")`` for each measured command."""
    found = [
        ("agecurriculum --help", ["--help"]),
        ("agecurriculum bins --help", ["bins", "--help"]),
        ("agecurriculum predict --help", ["predict", "--help"]),
        ("agecurriculum train --help", ["train", "--help"]),
        ("agecurriculum serve --help", ["serve", "--help"]),
    ]
    if data is not None:
        found.append(("agecurriculum bins --data DATA", ["bins", "--data", str(data)]))
        photo = data / "fairface" / "val" / "1.jpg"
        if photo.is_file():  # one photo, the default model (ONNX Runtime on a CPU)
            found.append(("agecurriculum predict PHOTO", ["predict", str(photo)]))
    return found


def run_once(python: str, root: Path, arguments: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one ``python -m agecurriculum ARGUMENTS``
    run; raises if it fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            [python, "-m", "agecurriculum", *arguments], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen does not wait again
        if process.returncode != 0:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"agecurriculum {' '.join(arguments)}: exit {process.returncode}: {message}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def serve_once(python: str, root: Path) -> tuple[float, float, float]:
    """Wall seconds from ``agecurriculum serve --port 0`` to its "loaded" line on stderr, CPU seconds until then
    (from ``/proc``), and its peak RSS (MiB) then; the server is stopped after. Linux only."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    process = subprocess.Popen(
        [python, "-m", "agecurriculum", "serve", "--port", "0"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stderr.readline()
        wall = time.perf_counter() - start
        if "loaded" not in line:
            raise RuntimeError(f"agecurriculum serve: no 'loaded' line: {line.strip()!r}")
        status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
        peak_kib = next(int(s.split()[1]) for s in status if s.startswith("VmHWM:"))
        ticks = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(ticks[11]) + int(ticks[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    finally:
        process.terminate()
        process.wait()
    return wall, cpu, peak_kib / 1024


def check_root(python: str, root: Path) -> str:
    """The file of the ``agecurriculum`` package that runs from ``root``; raises if it is not under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import agecurriculum; print(agecurriculum.__file__)"
    found = subprocess.run([python, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    path = Path(found.stdout.strip()).resolve()
    if not path.is_relative_to(root.resolve()):
        raise SystemExit(f"--root {root}: python imports agecurriculum from {path}, not from that folder")
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = REPO.parent / "shared" / "data"
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data if default_data.is_dir() else None,
        help=f"a data folder for `bins --data` (default: {default_data} when it exists)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default: %(default)s)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter (default: this one)")
    parser.add_argument("--root", type=Path, default=REPO, help="the checkout to measure (default: this repository)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    data = args.data.resolve() if args.data is not None else None
    package = check_root(args.python, args.root)

    rows = []
    measured: list[tuple[str, Callable[[], tuple[float, float, float]]]] = [
        (label, lambda arguments=arguments: run_once(args.python, args.root, arguments))
        for label, arguments in commands(data)
    ]
    if Path("/proc/self/status").is_file():
        measured.append(("agecurriculum serve (until loaded)", lambda: serve_once(args.python, args.root)))
    for label, measure in measured:
        measure()  # untimed: the file cache and the default model's ONNX export are warm
        runs = [measure() for _ in range(args.repeats)]
        walls, cpus, peaks = zip(*runs)
        rows.append(
            {
                "command": label,
                "median_s": statistics.median(walls),
                "min_s": min(walls),
                "cpu_s": statistics.median(cpus),
                "peak_rss_mib": statistics.median(peaks),
            }
        )

    print(f"package: {package}; data: {data}; {args.repeats} runs each; python {platform.python_version()}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n")
    print("| command | median wall (s) | fastest (s) | CPU (s) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| `{row['command']}` | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['cpu_s']:.2f} "
            f"| {row['peak_rss_mib']:.0f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"package": package, "data": str(data), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
