"""Is loading the bottleneck? Images/s the cached-crop data pipeline delivers versus images/s a training step eats.

    python benchmarks/data_pipeline.py --utkface ../shared/data/utkface --images 2000 \
        --cache /tmp/agecurriculum-bench-cache --image-size 112 --batch-size 32 --workers 0 1 2

Takes the first N records (sorted by file name), fills the crop cache with ``preprocess(mode="aligned")`` (timed
apart: a one-time cost; a second run finds everything cached), then measures, each in a fresh spawned process so
that order does not matter:

- the pipeline alone: ``FaceDataset(CachedCrops, train_transform)`` through a shuffling ``DataLoader`` for each
  ``--workers`` count, ``--epochs`` epochs less the first ``--warmup`` batches (persistent workers where w > 0);
- a training step alone: forward, ``UncertaintyLoss``, backward, AdamW step of ``DualClassifier(backbone)`` on
  random tensors of the same size and batch.

Crops are read from a warm OS file cache (the fill just wrote them). The numbers depend on the machine and on what
else runs on it: report them with the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from torch.utils.data import DataLoader

from agecurriculum import PAPER_BINS, DualClassifier, UncertaintyLoss, create_backbone
from agecurriculum.data.cache import CachedCrops, CropCache, Mode, preprocess
from agecurriculum.data.datasets import FaceDataset
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.records import FaceRecord
from agecurriculum.data.sources import discover, load_dataset
from agecurriculum.data.transforms import train_transform


def pipeline_images_per_second(
    records: list[FaceRecord],
    cache_dir: str,
    crop_size: int,
    mode: Mode,
    backbone: str,
    image_size: int,
    batch_size: int,
    workers: int,
    epochs: int,
    warmup: int,
) -> float:
    """Images/s a shuffling DataLoader delivers over ``epochs`` epochs, the first ``warmup`` batches not timed."""
    torch.manual_seed(0)  # same shuffle order for every worker count
    spec = create_backbone(backbone).spec
    dataset = FaceDataset(
        records,
        PAPER_BINS,
        CachedCrops(CropCache(cache_dir), FaceAligner(AlignConfig(size=crop_size)), mode),
        transform=train_transform(image_size, spec.mean, spec.std),
    )
    loader = DataLoader(dataset, batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    if not 1 <= warmup < epochs * len(loader):
        raise ValueError(f"need 1 <= warmup < {epochs} epochs x {len(loader)} batches, got warmup={warmup}")
    seen, images = 0, 0
    # Whole epochs, never a break mid-epoch: the workers are then idle when the loader shuts them down.
    for _ in range(epochs):
        for batch, _, _ in loader:
            seen += 1
            if seen == warmup:  # worker start-up and first-touch costs are behind us
                start = time.perf_counter()
            elif seen > warmup:
                images += len(batch)
    return images / (time.perf_counter() - start)


def training_images_per_second(backbone: str, image_size: int, batch_size: int, iterations: int, warmup: int) -> float:
    """Images/s of a full training step (forward, UncertaintyLoss, backward, AdamW step) on random tensors."""
    torch.manual_seed(0)
    model = DualClassifier(backbone=backbone, pretrained=False).train()
    loss_fn = UncertaintyLoss()
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size)
    age, gender = torch.randint(0, len(PAPER_BINS), (batch_size,)), torch.randint(0, 2, (batch_size,))
    for i in range(warmup + iterations):
        if i == warmup:  # thread-pool start-up and allocator growth are behind us
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(*model(x), age, gender).total.backward()
        optimizer.step()
    return batch_size * iterations / (time.perf_counter() - start)


def in_fresh_process(fn, *args):
    # Spawned, not a multiprocessing.Pool: pool processes are daemons, which may not start DataLoader workers.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def load_records(args: argparse.Namespace) -> list[FaceRecord]:
    """The first ``args.images`` records, sorted by path so every run measures the same images."""
    if args.data:
        records = [r for result in discover(args.data).values() for r in result.records]
    else:
        records = load_dataset("utkface", args.utkface).records
    return sorted(records, key=lambda r: str(r.path))[: args.images]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--utkface", default="../shared/data/utkface", help="UTKFace folder (the default workload)")
    source.add_argument("--data", help="data root: every dataset discover() finds there, instead of UTKFace")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cache", default="/tmp/agecurriculum-bench-cache")
    parser.add_argument(
        "--mode",
        choices=["aligned", "box", "detect"],
        default="aligned",
        help="aligned: the images are aligned crops already (UTKFace, FairFace, Adience aligned)",
    )
    parser.add_argument("--crop-size", type=int, default=AlignConfig().size, help="side of the cached crops")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fill-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--epochs", type=int, default=2, help="pipeline epochs run (the warm-up batches untimed)")
    parser.add_argument("--warmup", type=int, default=5, help="batches (pipeline) or steps (training) not timed")
    parser.add_argument("--iterations", type=int, default=20, help="training steps timed")
    args = parser.parse_args()

    records = load_records(args)
    cache, aligner = CropCache(args.cache), FaceAligner(AlignConfig(size=args.crop_size))
    start = time.perf_counter()
    fill = preprocess(records, aligner, cache, mode=args.mode, workers=args.fill_workers, progress=False)
    fill_s = time.perf_counter() - start
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"{len(records)} images, {args.crop_size} px crops ({args.mode}) -> {args.image_size} px, "
        f"batch {args.batch_size}, {args.backbone}"
    )
    print(
        f"cache fill: {fill_s:.1f} s with {args.fill_workers} processes; {fill.cached}/{len(records)} were "
        f"cached already; {len(fill.failed)} failed {fill.failure_counts or ''}\n"
    )

    common = (args.backbone, args.image_size, args.batch_size)
    training = in_fresh_process(training_images_per_second, *common, args.iterations, args.warmup)
    print("| workload | images/s | pipeline / training |")
    print("|---|---|---|")
    pipeline = {}
    for w in args.workers:
        pipeline[w] = in_fresh_process(
            pipeline_images_per_second,
            fill.succeeded,
            args.cache,
            args.crop_size,
            args.mode,
            *common,
            w,
            args.epochs,
            args.warmup,
        )
        print(f"| pipeline, num_workers={w} | {pipeline[w]:.1f} | {pipeline[w] / training:.2f} |", flush=True)
    print(f"| training step ({args.backbone}) | {training:.1f} | 1.00 |\n")

    best = max(pipeline, key=pipeline.get)
    verdict = "IS" if pipeline[best] < training else "is NOT"
    print(
        f"Verdict: loading {verdict} the bottleneck: the best pipeline (num_workers={best}) delivers "
        f"{pipeline[best] / training:.1f}x what a training step consumes."
    )
    if 0 in pipeline:  # in series: every step also waits for its batch to be loaded
        print(
            f"Note: with num_workers=0 loading runs in series with training: about "
            f"{100 * training / pipeline[0]:.0f}% extra time per step.",
            end=" ",
        )
    else:
        print("Note: with num_workers=0 loading would run in series with training.", end=" ")
    print("Only with num_workers > 0 does loading overlap training, and then its workers share the same cores.")


if __name__ == "__main__":
    main()
