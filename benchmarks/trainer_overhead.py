"""What CurriculumTrainer costs over a bare PyTorch loop: training images/s of train_one_epoch versus the plain loop.

    python benchmarks/trainer_overhead.py --images 640 --image-size 112 --batch-size 32 --repeats 3 --check

Both train the same model, ``DualClassifier(backbone, pretrained=True)`` (each run starts from its own copy of one
seeded model, in train mode), on the same in-memory ``TensorFaceDataset`` of ``--images`` random images, with the
same batch size, ``num_workers=0``, threads, loss (``UncertaintyLoss``) and optimizer (CurriculumTrainer's default:
AdamW at ``TrainerConfig``'s lr and weight decay, none on the loss's log-variances). One epoch each:

- ``trainer``: ``CurriculumTrainer(...).train_one_epoch(dataset)`` with a default ``TrainerConfig`` (CPU, fp32);
- ``bare``: ``for images, age, gender in DataLoader(dataset, batch_size, shuffle=True): zero_grad; loss =
  UncertaintyLoss()(*model(images), age, gender).total; loss.backward(); optimizer.step()``.

The timing of each covers the epoch only, DataLoader creation included, not building the trainer or the optimizer.
``--warmup`` untimed steps of the bare loop run first (thread pools, allocator), then the two alternate ``--repeats``
times, which one goes first alternating too. Prints the median images/s of each and the ratio trainer/bare;
``--check`` exits with status 1 when that ratio is below 0.95. The numbers depend on the machine and on what else
runs on it: report them with it.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from agecurriculum import (
    CurriculumTrainer,
    DualClassifier,
    MultiDatasetSample,
    TrainerConfig,
    TrainingSchedule,
    UncertaintyLoss,
)
from agecurriculum.data.datasets import TensorFaceDataset

REQUIRED_RATIO = 0.95  # the trainer must keep at least this fraction of the bare loop's images/s
AGE_BINS = 8


def bare_optimizer(model: nn.Module, loss_fn: nn.Module, config: TrainerConfig) -> torch.optim.Optimizer:
    # CurriculumTrainer._default_optimizer's groups and settings.
    return torch.optim.AdamW(
        [{"params": list(model.parameters())}, {"params": list(loss_fn.parameters()), "weight_decay": 0.0}],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )


def bare_epoch(
    model: nn.Module, dataset: TensorFaceDataset, config: TrainerConfig, max_steps: int | None = None
) -> float:
    """Images/s of one epoch (or ``max_steps`` batches) of the plain loop."""
    loss_fn = UncertaintyLoss()
    optimizer = bare_optimizer(model, loss_fn, config)
    model.train()
    loss_fn.train()
    seen = 0
    start = time.perf_counter()
    # The trainer's rule: no last batch of one image (batch norm cannot train on it).
    loader = DataLoader(
        dataset,
        config.batch_size,
        shuffle=True,
        num_workers=config.num_workers,
        drop_last=len(dataset) % config.batch_size == 1,
    )
    for step, (images, age, gender) in enumerate(loader):
        if step == max_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss_fn(*model(images), age, gender).total.backward()
        optimizer.step()
        seen += len(images)
    return seen / (time.perf_counter() - start)


def trainer_epoch(model: nn.Module, dataset: TensorFaceDataset, config: TrainerConfig) -> float:
    """Images/s of ``CurriculumTrainer.train_one_epoch`` over ``dataset``."""
    schedule = TrainingSchedule([MultiDatasetSample(["bench"], bins=range(AGE_BINS), epochs=1)])
    trainer = CurriculumTrainer(model, schedule, {"bench": dataset}, config=config)
    start = time.perf_counter()
    seen = trainer.train_one_epoch(dataset)[3]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640, help="random images in the dataset (one epoch)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed for each, alternating")
    parser.add_argument("--warmup", type=int, default=5, help="untimed bare-loop steps before the first repeat")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--check", action="store_true", help=f"exit 1 if trainer/bare < {REQUIRED_RATIO}")
    args = parser.parse_args()
    if min(args.images, args.image_size, args.batch_size, args.repeats, args.threads) < 1 or args.warmup < 0:
        parser.error("--images, --image-size, --batch-size, --repeats and --threads must be >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = DualClassifier(age_classes=AGE_BINS, backbone=args.backbone, pretrained=True)
    dataset = TensorFaceDataset(
        torch.randn(args.images, 3, args.image_size, args.image_size),
        torch.randint(0, AGE_BINS, (args.images,)),
        torch.randint(0, 2, (args.images,)),
    )
    config = TrainerConfig(batch_size=args.batch_size, num_workers=0)  # CPU, fp32, no progress bar
    if args.warmup:
        bare_epoch(copy.deepcopy(base), dataset, config, max_steps=args.warmup)

    runs: dict[str, list[float]] = {"trainer": [], "bare": []}
    epochs = {"trainer": trainer_epoch, "bare": bare_epoch}
    for repeat in range(args.repeats):
        for name in ("trainer", "bare") if repeat % 2 == 0 else ("bare", "trainer"):
            torch.manual_seed(repeat)  # the same dropout draws and shuffle seed for both in this repeat
            runs[name].append(epochs[name](copy.deepcopy(base), dataset, config))
    trainer, bare = statistics.median(runs["trainer"]), statistics.median(runs["bare"])
    ratio = trainer / bare

    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs; {args.backbone} (pretrained), "
        f"{args.images} random images of {args.image_size} px, batch {args.batch_size}, num_workers 0; "
        f"median of {args.repeats} epoch(s) each\n"
    )
    print("| loop | images/s (median) | each epoch |")
    print("|---|---|---|")
    for key, label in (("trainer", "CurriculumTrainer.train_one_epoch"), ("bare", "bare PyTorch loop")):
        each = ", ".join(f"{v:.1f}" for v in runs[key])
        print(f"| {label} | {statistics.median(runs[key]):.1f} | {each} |")
    verdict = "OK" if ratio >= REQUIRED_RATIO else "BELOW"
    print(f"\nratio trainer/bare: {ratio:.3f} ({verdict}: required >= {REQUIRED_RATIO})")
    if args.check and ratio < REQUIRED_RATIO:
        sys.exit(1)


if __name__ == "__main__":
    main()
