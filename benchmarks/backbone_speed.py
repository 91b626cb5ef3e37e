"""Images/s of a DualClassifier per backbone: inference and one training step (forward, backward, AdamW step).

    python benchmarks/backbone_speed.py --backbones efficientnet-lite0 efficientnet-b0 --image-size 112

Random input, batch 32 by default, after 20 warm-up iterations; prints one markdown table row per backbone. Each
backbone is measured in a fresh process: in one long process the first model measured ran markedly slower than the
same model measured again later, so order would decide the numbers.
The numbers depend on the machine and on what else runs on it: report them with the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import torch

from agecurriculum import DualClassifier, UncertaintyLoss


def images_per_second(step, batch_size: int, iterations: int, warmup: int = 20) -> float:
    # The first iterations of a process pay for thread-pool start-up and allocator growth: leave them out.
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return batch_size * iterations / (time.perf_counter() - start)


def measure(backbone: str, image_size: int, batch_size: int, iterations: int, threads: int) -> tuple[float, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DualClassifier(backbone=backbone)
    loss_fn = UncertaintyLoss()
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size)
    age, gender = torch.randint(0, 8, (batch_size,)), torch.randint(0, 2, (batch_size,))

    model.eval()

    def infer() -> None:
        with torch.inference_mode():
            model(x)

    inference = images_per_second(infer, batch_size, iterations)
    model.train()

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(*model(x), age, gender).total.backward()
        optimizer.step()

    return inference, images_per_second(train, batch_size, iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["efficientnet-lite0", "efficientnet-b0"])
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {args.threads} threads\n")
    print("| backbone | input | batch | inference img/s | training img/s |")
    print("|---|---|---|---|---|")
    for name in args.backbones:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            inference, training = pool.apply(
                measure, (name, args.image_size, args.batch_size, args.iterations, args.threads)
            )
        print(f"| {name} | {args.image_size} px | {args.batch_size} | {inference:.1f} | {training:.1f} |", flush=True)


if __name__ == "__main__":
    main()
