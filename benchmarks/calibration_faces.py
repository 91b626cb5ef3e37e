"""A folder of calibration images for ``agecurriculum export --int8``: a seeded sample of a training part.

    python benchmarks/calibration_faces.py --data ../shared/data --config examples/configs/default_model.yaml \
        --dataset utkface --images 512 --out runs/calibration-utkface

Calibration must not see the test images the int8 model is then scored on: this takes the ``--images`` files of
``--dataset``'s training part under the run's split (fractions and seed from ``--config``, as
``benchmarks/peer_comparison.py`` reads them), in a seeded random sample, and links them (symbolic links, no copy)
into ``--out``. UTKFace's files are aligned crops: pass ``--aligned`` to the export.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

from agecurriculum.config import load_config
from agecurriculum.data.sources import DATASETS, discover
from agecurriculum.data.splits import split_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data root laid out like ../shared/data")
    parser.add_argument("--config", type=Path, required=True, help="the training run's config (its data.split*)")
    parser.add_argument("--dataset", choices=DATASETS, default="utkface", help="whose training part to sample")
    parser.add_argument("--images", type=int, default=512, help="files to link")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--out", type=Path, required=True, help="folder to create and fill with links")
    args = parser.parse_args()
    config = load_config(args.config)
    records = discover(args.data, require_images=True, datasets=[args.dataset])[args.dataset].records
    train = sorted(
        split_records(records, config.data.split, seed=config.data.split_seed).train, key=lambda r: str(r.path)
    )
    sample = random.Random(args.seed).sample(train, min(args.images, len(train)))
    args.out.mkdir(parents=True, exist_ok=True)
    for record in sample:
        link = args.out / record.path.name
        if not link.exists():
            os.symlink(record.path.resolve(), link)
    print(f"linked {len(sample)} of the {len(train)} {args.dataset} training-part files into {args.out}")


if __name__ == "__main__":
    main()
