"""Size, speed and parity of the models for phones (``agecurriculum export --format ort|coreml``) on this CPU.

    python benchmarks/mobile_export.py --calibration runs/calibration-utkface --aligned \
        --faces '../shared/data/utkface/UTKFace/*.jpg' --max-faces 256 --threads 2 --repeats 3

The release (``--model``, default the installed model) is exported as the ``export`` command does, into a temporary
folder: float32 ONNX (``export_onnx``), int8 ONNX (``quantize_onnx``, calibrated on the first
``--calibration-faces`` faces of ``--calibration`` in the command's seeded order), both converted to ``.ort``
(``convert_to_ort``), int8 ONNX with 7-bit weights (``reduce_range=True``, for CPUs without VNNI), and CoreML
(``export_coreml``, when coremltools is installed: size only, since CoreML runs only on macOS). For each file: its
size in bytes; ms per face of ONNX Runtime (``OnnxBackend``, ``--threads``
intra-op threads) at batch 1 and batch 32 on random normalised input, ``--images`` images per repeat after
``--warmup`` untimed calls, median over ``--repeats``; and its agreement with the torch model on the faces of
``--faces`` (none of the calibration files): the largest absolute difference of any age or gender probability, and
the share of faces whose likeliest age bin and gender are the torch model's. torch eager is timed the same way as
the reference. The numbers depend on the machine and on what else runs on it: report them with it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agecurriculum.cli.predict import expand_paths
from agecurriculum.inference import (
    DEFAULT_RELEASE_DIR,
    OnnxBackend,
    Predictor,
    ReleaseInfo,
    TorchBackend,
    convert_to_ort,
    cpu_has_vnni,
    export_coreml,
    export_onnx,
    quantize_onnx,
    read_release_config,
)
from agecurriculum.inference.mobile import model_bytes

BATCHES = (1, 32)


def ms_per_face(backend: Any, size: int, batch: int, images: int, warmup: int) -> float:
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    for _ in range(warmup):
        backend(x)
    calls = max(1, images // batch)
    start = time.perf_counter()
    for _ in range(calls):
        backend(x)
    return (time.perf_counter() - start) * 1000 / (calls * batch)


def faces_of(paths: list[str], predictor: Predictor, aligned: bool, count: int) -> np.ndarray:
    return np.stack(list(itertools.islice(predictor.network_inputs(paths, aligned=aligned), count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RELEASE_DIR, help="release folder (default: installed)")
    parser.add_argument("--calibration", required=True, help="folder or quoted glob of int8 calibration images")
    parser.add_argument("--faces", required=True, help="folder or quoted glob of images to compare outputs on")
    parser.add_argument("--aligned", action="store_true", help="both are aligned face crops (no face finding)")
    parser.add_argument("--calibration-faces", type=int, default=256, help="faces to calibrate on (export's default)")
    parser.add_argument("--max-faces", type=int, default=256, help="faces to compare outputs on")
    parser.add_argument("--images", type=int, default=320, help="images per timed repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before each timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is shown")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = ReleaseInfo.from_config(read_release_config(args.model), str(args.model))
    calibration, _ = expand_paths([args.calibration])
    random.Random(0).shuffle(calibration)  # the order `agecurriculum export --int8` takes them in
    used = {os.path.realpath(p) for p in calibration}
    faces = [p for p in expand_paths([args.faces])[0] if os.path.realpath(p) not in used]
    if not calibration or not faces:
        parser.error("--calibration and --faces must each match images (and --faces some not in --calibration)")

    torch_backend = TorchBackend(args.model)
    predictor = Predictor(torch_backend, workers=1)
    calib = faces_of(calibration, predictor, args.aligned, args.calibration_faces)
    test = faces_of(faces, predictor, args.aligned, args.max_faces)
    reference = torch_backend(test)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mobile-export-") as tmp:
        tmp_dir = Path(tmp)
        f32 = export_onnx(args.model, tmp_dir / "model.onnx")
        int8 = quantize_onnx(f32, tmp_dir / "model-int8.onnx", calib)
        int7 = quantize_onnx(f32, tmp_dir / "model-int7.onnx", calib, reduce_range=True)  # for CPUs without VNNI
        files = {
            "onnx float32": f32,
            "onnx int8": int8,
            "onnx int8 --reduce-range": int7,
            "ort float32": convert_to_ort(f32, tmp_dir / "model.ort"),
            "ort int8": convert_to_ort(int8, tmp_dir / "model-int8.ort"),
        }
        try:
            files["coreml float32"] = export_coreml(args.model, tmp_dir / "model.mlpackage")
        except ImportError as e:
            print(f"no CoreML row: {e}", file=sys.stderr)
        for name, path in [("torch float32", None), *files.items()]:
            runnable = not name.startswith("coreml")
            backend = (torch_backend if path is None else OnnxBackend(path, threads=args.threads)) if runnable else None
            speed = {
                b: statistics.median(
                    ms_per_face(backend, info.image_size, b, args.images, args.warmup) for _ in range(args.repeats)
                )
                if backend
                else None
                for b in BATCHES
            }
            if backend:
                age, gender = backend(test)
                diff = max(np.abs(age - reference[0]).max(), np.abs(gender - reference[1]).max())
                agree = (
                    (age.argmax(1) == reference[0].argmax(1)).mean(),
                    (gender.argmax(1) == reference[1].argmax(1)).mean(),
                )
            size = model_bytes(path or args.model / "model.safetensors")  # torch: the release's weights file
            rows.append((name, size, speed, diff if backend else None, agree if backend else None))

    import onnxruntime

    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    vnni = {True: "with VNNI", False: "without VNNI", None: "VNNI unknown"}[cpu_has_vnni()]
    print(
        f"{cpu} ({vnni}), {os.cpu_count()} CPUs; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
        f"{args.threads} threads"
    )
    shown = os.path.relpath(args.model) if args.model.is_absolute() else args.model  # no machine's paths in docs
    print(
        f"release {shown}: {info.architecture}, {info.image_size} px input; int8 calibrated on {len(calib)} "
        f"faces of {args.calibration}; outputs compared on {len(test)} faces of {args.faces}"
    )
    print(f"ms per face: random input, {args.images} images per repeat, median of {args.repeats}\n")
    print(
        "| model | bytes | ms/face batch 1 | ms/face batch 32 | max abs prob diff vs torch | "
        "age bin agrees | gender agrees |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, size, speed, diff, agree in rows:
        cells = [f"{speed[b]:.2f}" if speed[b] is not None else "macOS only" for b in BATCHES]
        parity = [f"{diff:.1e}", f"{agree[0]:.1%}", f"{agree[1]:.1%}"] if agree else ["macOS only"] * 3
        print(f"| {name} | {size} | {' | '.join(cells)} | {' | '.join(parity)} |")
    print(f"\ncommand: python benchmarks/mobile_export.py {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
