"""How to add a dataset: one loader and one registry entry (docs/add_dataset.rst walks through it).

The dataset here, "selfies", is a folder holding ``labels.csv`` (``path,age,gender``) and the face crops it names,
already framed as the aligner frames faces. Registered, it is found under a data root like the built-in ones, its
crops are taken as they are, its exact ages count for the bins' age histogram, and the report scores it in the
7 age groups, all from the traits of its entry; nothing else in the library names it.

It runs offline in about a minute on 2 CPU cores: it writes a small demo folder (crops of scikit-image's astronaut
photo), trains a tiny model for a few steps and prints what the run made of the new dataset.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image
from skimage import data as skdata

from agecurriculum.config import RunConfig
from agecurriculum.data.records import LoadResult
from agecurriculum.data.sources import DATASETS, DatasetSource, load_csv
from agecurriculum.train.run import train


# 1. The loader: the dataset's folder -> its records, or None when the folder does not hold it. In the library it
#    is a module of agecurriculum/data/sources/ (selfies.py); any label format works as long as it makes records.
def load_selfies(folder: Path, require_images: bool = True) -> LoadResult | None:
    table = folder / "labels.csv"
    return load_csv(table, dataset="selfies", require_images=require_images) if table.is_file() else None


# 2. The registry entry with the dataset's traits. In the library it is one more line of the DATASETS literal in
#    agecurriculum/data/sources/__init__.py; a script can add it at run time, as here.
DATASETS["selfies"] = DatasetSource(
    "labels.csv (path,age,gender) and the face crops it names",  # the layout, for messages and --help
    load_selfies,
    framing="aligned",  # ready-made crops: squared and resized, never sent through the face detector
    title="Selfies",  # its name in reports
    protocols=("seven_groups",),  # also scored in the 7 groups 0-3, 4-12, ..., 61+ (evaluation.protocols)
    not_in_histogram=None,  # exact ages: they count for the age histogram that bins: auto is fitted on
)


def make_demo_folder(folder: Path, count: int = 36) -> None:
    """A "selfies" folder: ``count`` shifted crops of the astronaut's face, ages cycling through every bin."""
    (folder / "faces").mkdir(parents=True, exist_ok=True)
    photo = skdata.astronaut()
    rows = ["path,age,gender"]
    for i in range(count):
        dx, dy, age = (i * 7) % 30 - 15, (i * 5) % 20 - 10, [1, 5, 10, 18, 28, 40, 52, 70][i % 8] + i % 3
        Image.fromarray(photo[30 + dy : 230 + dy, 120 + dx : 320 + dx]).resize((48, 48)).save(folder / f"faces/{i}.png")
        rows.append(f"faces/{i}.png,{age},{'mf'[i % 2]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the demo data and the run (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="add-dataset-"))
    make_demo_folder(out / "data" / "selfies")

    # 3. Use it by name, like any other dataset: here a one-stage run on it alone.
    config = RunConfig(
        out_dir=str(out / "run"), bins="auto", schedule=[{"datasets": ["selfies"], "bins": list(range(8)), "epochs": 1}]
    )
    config.data.root, config.data.datasets, config.data.cache = str(out / "data"), ["selfies"], str(out / "cache")
    config.data.image_size, config.data.split, config.data.preprocess_workers = 32, [0.6, 0.2, 0.2], 0
    config.model.pretrained, config.model.bottleneck_dim = False, 16
    config.trainer.batch_size, config.trainer.max_steps_per_epoch = 8, 2
    config.trainer.verbose = False  # the lines per epoch hold timings: this page shows only what does not vary
    result = train(config)

    release = json.loads((result.release_dir / "config.json").read_text(encoding="utf-8"))
    print("datasets:", ", ".join(result.data.splits))
    print("bins fitted on its ages:", ", ".join(result.data.bins.labels()))
    print("release alignment:", json.dumps(release["preprocessing"]["alignment"], sort_keys=True))
    print("report protocols:", "; ".join(result.report.protocols))


if __name__ == "__main__":
    main()
