"""Inference speed of a release on this CPU: torch eager versus ONNX Runtime, the model alone and end to end.

    python benchmarks/inference_speed.py --model runs/default-v1/release \
        --photos '../shared/data/fairface/val/*.jpg' --aligned-photos ../shared/data/utkface/UTKFace \
        --max-photos 64 --threads 2 --repeats 3 --json /tmp/inference_speed.json

The release (``--model``, default the installed model at ``agecurriculum.inference.DEFAULT_RELEASE_DIR``) is
exported to ONNX in a temporary folder with ``export_onnx``; then, for each backend (``TorchBackend``, eager, and
``OnnxBackend``), three modes at batch 1 and batch 32:

- ``model``: the backend alone on random normalised input ``(B, 3, S, S)`` (S the release's image size),
  ``--model-images`` images per repeat (that many calls at batch 1, a 32nd of them at batch 32), after ``--warmup``
  untimed calls;
- ``photos``: ``Predictor.predict`` on photo files, everything ``agecurriculum predict`` does (decode, HOG detection,
  CNN check of each box, alignment, network): batch 1 is one photo per call, batch 32 a list of 32 photos per call
  (the Predictor's ``batch_size`` is 32 faces in both, its default). ``--photos`` takes a folder or a quoted glob
  pattern, ``--max-photos`` the first N files in sorted order; without it, a few of scikit-image's bundled photos
  (only the astronaut shows a face) written as PNG to a temporary folder, so the script runs anywhere;
- ``aligned``: the same on aligned face crops with ``aligned=True`` (decode, square crop, resize, network: no
  detection), e.g. UTKFace's files via ``--aligned-photos``; without it, the faces found in the photos, aligned at
  200 px (UTKFace's size) and written as PNG to a temporary folder.

``--spin-wait`` builds the ``OnnxBackend`` with ``spin_wait=True`` (ONNX Runtime's own default): its worker threads
then busy-wait between calls, on the cores that decoding and detection need, instead of sleeping.

``--int8 FILE`` adds a third backend, ``onnxruntime-int8``: that file, the release quantized by ``agecurriculum export
--int8``, in ``OnnxBackend``.

Each end-to-end row is warmed up by one untimed call (its first photo or first list of 32). When fewer files than
``--max-photos`` are found they are cycled up to that count. Every repeat runs each backend in a fresh spawned
process (so neither inherits the other's thread pools or allocator state), the two backends in alternating order;
the table gives the median over ``--repeats`` and the range. ``--threads`` goes to ``torch.set_num_threads`` in both
processes (the ONNX process also runs the torch preprocessing) and to ONNX Runtime's intra-op threads; dlib's HOG
detector is single-threaded. The numbers depend on the machine and on what else runs on it: report them with it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import dlib
import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

from agecurriculum.cli.predict import expand_paths
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.images import load_image
from agecurriculum.inference import (
    DEFAULT_RELEASE_DIR,
    FaceVerifier,
    OnnxBackend,
    Predictor,
    ReleaseInfo,
    TorchBackend,
    export_onnx,
    read_release_config,
)

BATCHES = (1, 32)
# scikit-image photos that ship with it (no download); only the astronaut shows a face.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
ALIGNED_SIZE = 200  # side of the fallback aligned crops: UTKFace's


def measure(
    backend_name: str,
    release_dir: str,
    onnx_path: str | None,
    photos: list[str],
    crops: list[str],
    args: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """One repeat of every row of one backend, in this (fresh) process: ``"mode/batch" -> {inputs, faces, seconds}``."""
    torch.set_num_threads(args["threads"])
    if backend_name == "torch":
        backend: Any = TorchBackend(release_dir)
    else:  # one session: a second one's idle thread pool would compete for the cores
        backend = OnnxBackend(onnx_path, threads=args["threads"], spin_wait=args["spin_wait"])
    size = ReleaseInfo.from_config(backend.config).image_size
    rows = {}
    for batch in BATCHES:
        images = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
        for _ in range(args["warmup"]):
            backend(images)
        calls = max(1, args["model_images"] // batch)
        start = time.perf_counter()
        for _ in range(calls):
            backend(images)
        seconds = time.perf_counter() - start
        rows[f"model/{batch}"] = {"inputs": calls * batch, "faces": calls * batch, "seconds": seconds}
    # batch_size 32 faces; by default verify=True, upsample=1: what `agecurriculum predict` runs
    predictor = Predictor(backend, verify=args["verify"], upsample=args["upsample"])
    for mode, files in (("photos", photos), ("aligned", crops)):
        for batch in BATCHES:
            calls = [files[i : i + batch] for i in range(0, len(files), batch)]
            predictor.predict(calls[0], aligned=mode == "aligned")  # warm-up: dlib models, first shapes
            faces = 0
            start = time.perf_counter()
            for call in calls:
                faces += sum(len(r["faces"]) for r in predictor.predict(call, aligned=mode == "aligned"))
            seconds = time.perf_counter() - start
            rows[f"{mode}/{batch}"] = {"inputs": len(files), "faces": faces, "seconds": seconds}
    return rows


def in_fresh_process(fn, *args):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def cycled(files: list[str], count: int) -> list[str]:
    return [files[i % len(files)] for i in range(count)] if files else []


def skimage_photos(folder: Path) -> list[str]:
    paths = []
    for name in SKIMAGE_PHOTOS:
        image = getattr(skdata, name)()
        path = folder / f"{name}.png"
        Image.fromarray(image).convert("RGB").save(path)
        paths.append(str(path))
    return paths


def aligned_crops_of(photos: list[str], padding: float, count: int, folder: Path) -> list[str]:
    """The verified faces of ``photos``, aligned at UTKFace's 200 px and written as PNG; at most ``count``."""
    aligner, verifier, paths = FaceAligner(AlignConfig(size=ALIGNED_SIZE, padding=padding)), FaceVerifier(), []
    for photo in dict.fromkeys(photos):  # distinct files, in order
        image = load_image(photo)
        for face in aligner.detect(image):
            if len(paths) < count and verifier.is_face(image, face.box):
                paths.append(str(folder / f"face{len(paths):04d}.png"))
                Image.fromarray(face.crop).save(paths[-1])
    return paths


def find_files(pattern: str, count: int, what: str) -> list[str]:
    files, unmatched = expand_paths([pattern])
    if unmatched:
        raise SystemExit(f"inference_speed.py: {what} {pattern} matches no file")
    return files[:count]


def machine(threads: int) -> dict[str, Any]:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "dlib": dlib.__version__,
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_RELEASE_DIR,
        help="release folder (default: the installed model, %(default)s)",
    )
    parser.add_argument("--photos", help="folder or quoted glob of photos (default: scikit-image's bundled photos)")
    parser.add_argument(
        "--aligned-photos",
        help="folder or quoted glob of aligned face crops, e.g. UTKFace "
        "(default: the faces found in the photos, aligned at 200 px)",
    )
    parser.add_argument("--max-photos", type=int, default=64, help="photos (and crops) per repeat, cycled if fewer")
    parser.add_argument("--model-images", type=int, default=640, help="images per repeat of the model-only rows")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before the model-only rows")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (fresh processes); the median is shown")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument(
        "--upsample", type=int, default=1, help="HOG upsamplings, as `agecurriculum predict --upsample`"
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="no CNN re-check of HOG boxes, as `agecurriculum predict --no-verify`",
    )
    parser.add_argument(
        "--spin-wait",
        action="store_true",
        help="ONNX Runtime's worker threads busy-wait between calls (OnnxBackend spin_wait=True)",
    )
    parser.add_argument(
        "--int8",
        type=Path,
        metavar="FILE",
        help="also time this int8 ONNX file of --model (from `agecurriculum export --int8`) as the "
        "backend onnxruntime-int8",
    )
    parser.add_argument("--json", type=Path, help="also write the machine, settings and rows to this JSON file")
    args = parser.parse_args()
    if min(args.max_photos, args.model_images, args.repeats, args.threads) < 1 or args.warmup < 0:
        parser.error("--max-photos, --model-images, --repeats and --threads must be >= 1, --warmup >= 0")
    if not args.model.is_dir():
        parser.error(
            f"no release folder at {args.model}; pass one with --model (e.g. RUN/release of `agecurriculum train`)"
        )
    info = ReleaseInfo.from_config(read_release_config(args.model), str(args.model))

    with tempfile.TemporaryDirectory(prefix="inference-speed-") as tmp:
        tmp_dir = Path(tmp)
        if args.photos:
            distinct = find_files(args.photos, args.max_photos, "--photos")
            source = args.photos
        else:
            (tmp_dir / "photos").mkdir()
            distinct, source = skimage_photos(tmp_dir / "photos"), "scikit-image photos " + ", ".join(SKIMAGE_PHOTOS)
        if args.aligned_photos:
            distinct_crops = find_files(args.aligned_photos, args.max_photos, "--aligned-photos")
            crop_source = args.aligned_photos
        else:
            (tmp_dir / "crops").mkdir()
            distinct_crops = aligned_crops_of(distinct, info.padding, args.max_photos, tmp_dir / "crops")
            crop_source = f"faces found in the photos, aligned at {ALIGNED_SIZE} px"
            if not distinct_crops:
                parser.error("no face found in the photos to make aligned crops from; pass --aligned-photos")
        photos, crops = cycled(distinct, args.max_photos), cycled(distinct_crops, args.max_photos)
        onnx_paths = {"torch": None, "onnxruntime": str(export_onnx(args.model, tmp_dir / "model.onnx"))}
        if args.int8:
            onnx_paths["onnxruntime-int8"] = str(args.int8)
        backends = list(onnx_paths)

        settings = {
            "threads": args.threads,
            "warmup": args.warmup,
            "model_images": args.model_images,
            "verify": args.verify,
            "upsample": args.upsample,
            "spin_wait": args.spin_wait,
        }
        runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in backends}
        for repeat in range(args.repeats):
            for name in backends if repeat % 2 == 0 else backends[::-1]:  # alternate which backend goes first
                runs[name].append(
                    in_fresh_process(measure, name, str(args.model), onnx_paths[name], photos, crops, settings)
                )

    env = machine(args.threads)
    rows = []
    for name in backends:
        for key in runs[name][0]:
            mode, batch = key.split("/")
            reps = [run[key] for run in runs[name]]
            rates = [r["inputs"] / r["seconds"] for r in reps]
            face_rates = [r["faces"] / r["seconds"] for r in reps]
            rows.append(
                {
                    "backend": name,
                    "mode": mode,
                    "batch": int(batch),
                    "inputs": reps[0]["inputs"],
                    "faces": reps[0]["faces"],
                    "inputs_per_s": statistics.median(rates),
                    "faces_per_s": statistics.median(face_rates),
                    "inputs_per_s_repeats": rates,
                    "faces_per_s_repeats": face_rates,
                }
            )

    print(
        f"{env['cpu']}, {env['cpus']} CPUs; torch {env['torch']}, onnxruntime {env['onnxruntime']}, "
        f"dlib {env['dlib']}; {args.threads} threads"
    )
    print(f"release {args.model}: {info.architecture}, {info.image_size} px input")
    print(f"photos: {len(photos)} per repeat from {len(distinct)} file(s) of {source}")
    print(f"aligned: {len(crops)} per repeat from {len(distinct_crops)} file(s) of {crop_source}")
    print(
        f"face finding: HOG upsample {args.upsample}, CNN re-check {'on' if args.verify else 'off'}; ONNX Runtime "
        f"threads {'spin' if args.spin_wait else 'sleep'} between calls"
    )
    print(
        f"median of {args.repeats} repeat(s), each in a fresh process; inputs are random tensors (model), photo "
        "files (photos) or aligned crop files (aligned)\n"
    )
    print("| backend | mode | batch | inputs | faces | inputs/s | faces/s | inputs/s range |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        spread = f"{min(r['inputs_per_s_repeats']):.1f}-{max(r['inputs_per_s_repeats']):.1f}"
        print(
            f"| {r['backend']} | {r['mode']} | {r['batch']} | {r['inputs']} | {r['faces']} | "
            f"{r['inputs_per_s']:.1f} | {r['faces_per_s']:.1f} | {spread} |"
        )
    if args.json:
        report = {
            "machine": env,
            "release": str(args.model),
            "image_size": info.image_size,
            "photos": source,
            "aligned_photos": crop_source,
            "settings": {
                **vars(args),
                "model": str(args.model),
                "json": str(args.json),
                "int8": args.int8 and str(args.int8),
            },
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
