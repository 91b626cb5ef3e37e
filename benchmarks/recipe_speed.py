"""Training images/s of the release recipe's step and of the ways to buy more epochs in the same minutes.

    .venv/bin/python benchmarks/recipe_speed.py --images 384 --repeats 3

Every variant trains ``CurriculumTrainer.train_one_epoch`` from its own copy of the shipped release (the recipe's
warm start) on the same in-memory random images (loading and augmentation are not timed: they are the same in every
variant), batch 32, fp32, on the CPU:

- ``recipe``: examples/configs/release.yaml's step at 160 px;
- ``teacher``: the same with a distillation teacher (a copy of the release, as the shipped model's last runs were
  made), whose forward pass every step adds;
- ``128px``: the step at 128 px (progressive resizing: early epochs smaller);
- ``frozen-N``: the stem and the first N of 16 blocks frozen (``freeze_backbone(N)``): no gradients for them;
- ``frozen-N+teacher``: that with the teacher (as rounds 8-9 of the recipe distilled the age from the parent): the
  frozen part holds the teacher's own weights, so it runs once a batch for both
  (:func:`~agecurriculum.model.shared_frozen_blocks`); ``frozen-N+teacher, own pass`` hides that from the trainer
  (the teacher wrapped in an ``nn.Sequential``), as before the sharing, so the teacher runs its whole pass;
- ``gender-branch-N``: the model grown with a gender branch after block N (``model.gender_branch``) and only the
  branch trained (``model.train_only_gender``): the whole network runs forward, the branch alone backward;
- ``compile`` and ``frozen-N+compile`` (with ``--compile``): ``torch.compile`` of the model, whole or with N blocks
  frozen; the compile time (the first epoch, untimed in the rounds) is reported apart;
- ``bf16`` (with ``--amp``): the recipe's step under CPU bf16 autocast (``trainer.amp: true``), which CPUs with
  AMX or AVX-512 BF16 could run faster.

The variants alternate over ``--repeats`` rounds (the order rotating) after ``--warmup`` untimed steps; the median
images/s of each is printed with the ratio to ``recipe``. Numbers depend on the CPU and on what else runs: compare
only within one run, on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
from torch import nn

from agecurriculum import CurriculumTrainer, MultiDatasetSample, TrainerConfig, TrainingSchedule
from agecurriculum.data.datasets import TensorFaceDataset
from agecurriculum.inference import DEFAULT_RELEASE_DIR
from agecurriculum.model import DualClassifier
from agecurriculum.release import load_release


def epoch_rate(
    model: torch.nn.Module, dataset: TensorFaceDataset, teacher: torch.nn.Module | None = None, amp: bool = False
) -> float:
    schedule = TrainingSchedule([MultiDatasetSample(["bench"], bins=range(8), epochs=1)])
    trainer = CurriculumTrainer(
        model, schedule, {"bench": dataset}, config=TrainerConfig(batch_size=32, lr=2e-4, amp=amp), teacher=teacher
    )
    start = time.perf_counter()
    seen = trainer.train_one_epoch(dataset)[3]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="the parent release (default: the shipped model)")
    parser.add_argument("--images", type=int, default=384, help="random images per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frozen", type=int, nargs="*", default=[4, 8], help="blocks frozen, one variant each")
    parser.add_argument("--branch", type=int, nargs="*", default=[15], help="gender branches, one variant each")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    parser.add_argument("--amp", action="store_true", help="also time the step under bf16 autocast")
    args = parser.parse_args()

    parent, _ = load_release(args.release or DEFAULT_RELEASE_DIR)
    torch.manual_seed(0)

    def data(size: int) -> TensorFaceDataset:
        return TensorFaceDataset(
            torch.randn(args.images, 3, size, size),
            torch.randint(0, 8, (args.images,)),
            torch.randint(0, 2, (args.images,)),
        )

    big, small = data(160), data(128)
    warmup = TensorFaceDataset(big.images[:64], big.age_bins[:64], big.genders[:64])  # untimed first epochs
    teacher = copy.deepcopy(parent).eval()

    def frozen_copy(n: int) -> DualClassifier:
        model = copy.deepcopy(parent)
        if n:
            model.freeze_backbone(n)
        return model

    def frozen(n: int, with_teacher: torch.nn.Module | None = None):
        def run() -> float:
            return epoch_rate(frozen_copy(n), big, with_teacher)

        return run

    def branch(n: int):
        def run() -> float:
            model = DualClassifier.from_config({**parent.config(), "gender_branch": n}, pretrained=False)
            model.load_state_dict_growing(parent.state_dict())
            model.freeze_age_path()
            return epoch_rate(model, big)

        return run

    variants = {
        "recipe": lambda: epoch_rate(copy.deepcopy(parent), big),
        "teacher": lambda: epoch_rate(copy.deepcopy(parent), big, teacher),
        "128px": lambda: epoch_rate(copy.deepcopy(parent), small),
        **{f"frozen-{n}": frozen(n) for n in args.frozen},
        **{f"frozen-{n}+teacher": frozen(n, teacher) for n in args.frozen},
        **{f"frozen-{n}+teacher, own pass": frozen(n, nn.Sequential(teacher)) for n in args.frozen},
        **{f"gender-branch-{n}": branch(n) for n in args.branch},
    }
    if args.amp:
        variants["bf16"] = lambda: epoch_rate(copy.deepcopy(parent), big, amp=True)
    compile_seconds: dict[str, float] = {}
    if args.compile:
        # Compiled once, outside the timed rounds: the first epoch compiles (minutes), later ones reuse the graphs.
        for name, frozen_blocks in [("compile", 0), *((f"frozen-{n}+compile", n) for n in args.frozen)]:
            compiled = torch.compile(frozen_copy(frozen_blocks))
            start = time.perf_counter()
            epoch_rate(compiled, warmup)
            compile_seconds[name] = time.perf_counter() - start
            variants[name] = lambda compiled=compiled: epoch_rate(compiled, big)
    epoch_rate(copy.deepcopy(parent), warmup)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            torch.manual_seed(repeat)
            rates[name].append(variants[name]())
    base = statistics.median(rates["recipe"])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; parent "
        f"{args.release or 'the shipped model'}; {args.images} random images per epoch, batch 32, fp32 (but bf16); "
        f"median of {args.repeats}\n"
    )
    print("| variant | images/s (median) | x recipe | each round |")
    print("|---|---|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / base:.2f} | {', '.join(f'{v:.1f}' for v in values)} |")
    if compile_seconds:
        print()
    for name, seconds in compile_seconds.items():
        print(f"{name}: the first epoch of 64 images (compiling) took {seconds:.0f} s")


if __name__ == "__main__":
    main()
