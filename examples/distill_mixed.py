"""The last training run of the shipped default model: distil an ensemble into one network, with the datasets
shuffled together in every epoch.

Algorithm 1 trains the datasets of a stage one after the other, and the last one pulls the model towards itself:
on MORPH-II's validation part the members of the earlier default ensemble reached 65-75% 8-bin age accuracy right
after their MORPH-II epochs and 36-46% after the UTKFace epochs that followed. Here the four training sets are one
"mixed" dataset, so every batch holds faces of all of them, and the ensemble (the teacher) is learned together with
the labels. It uses only the public API: :func:`~agecurriculum.train.run.prepare_data` prepares the data as
``agecurriculum train`` does, :func:`~agecurriculum.train.run.add_mixed` adds the mixed dataset to it in this
script's order, and :func:`~agecurriculum.train.run.train` runs the one-stage curriculum over it. (A config whose
schedule names ``mixed`` gets the same from ``agecurriculum train`` alone, in the order the datasets were prepared:
examples/configs/release.yaml.)

    python examples/distill_mixed.py --data ../shared/data --cache runs/crops \\
        --student runs/default-model-finetune/release --teacher runs/default-ensemble --out runs/default-model-mixed

The settings are those of examples/configs/default_model_distill.yaml (3 epochs at 3e-4, distill_weight 0.7); on a
2-core CPU the run takes about 25 minutes. Pass more ``--set section.field=value`` overrides after the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agecurriculum.config import apply_overrides, load_config
from agecurriculum.train.run import add_mixed, prepare_data, train

CONFIG = Path(__file__).parent / "configs" / "default_model_distill.yaml"
DATASETS = ("fairface", "morph2", "adience", "utkface")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="data root laid out like ../shared/data")
    parser.add_argument("--cache", required=True, help="aligned-crop cache folder")
    parser.add_argument("--student", required=True, help="release to start from (one network)")
    parser.add_argument("--teacher", required=True, help="release to distil (e.g. an ensemble)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from OUT/checkpoint.pt after an interruption "
        "(a finished run trains no more and only rewrites the release and the report)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = parser.parse_args()
    config = apply_overrides(
        load_config(CONFIG),
        [
            f"data.root={args.data}",
            f"data.cache={args.cache}",
            f"out_dir={args.out}",
            f"model.init_from={args.student}",
            f"teacher={args.teacher}",
            "schedule=[{datasets: [mixed], bins: [0, 1, 2, 3, 4, 5, 6, 7], epochs: 3}]",
            *args.set,
        ],
    )
    prepared = prepare_data(config)
    add_mixed(prepared, order=DATASETS)  # the order the shipped model's runs concatenated them in
    result = train(config, resume=args.resume, prepared=prepared)
    print(f"release: {result.release_dir}")


if __name__ == "__main__":
    main()
