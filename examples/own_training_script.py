"""Use agecurriculum's pieces inside your own training script (the tutorial in docs/tutorial.rst walks through it).

Three ways, from least to most of the library:

1. your own loop, with only ``GenderConditionedHead`` on your backbone and ``UncertaintyLoss``;
2. your own loop over curriculum stages, calling ``CurriculumTrainer.train_one_epoch`` / ``evaluate``;
3. ``CurriculumTrainer.fit`` with a run folder: checkpoints every epoch, resumable after a kill.

It runs offline in seconds on random tensors; swap in your datasets of ``(image, age_bin, gender)`` items.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch import nn

from agecurriculum import (
    CurriculumTrainer,
    FilteredDataset,
    GenderConditionedHead,
    MultiDatasetSample,
    TensorFaceDataset,
    TrainerConfig,
    TrainingSchedule,
    UncertaintyLoss,
)


def random_faces(n: int, generator: torch.Generator) -> TensorFaceDataset:
    return TensorFaceDataset(
        torch.randn(n, 3, 32, 32, generator=generator),
        torch.randint(0, 8, (n,), generator=generator),
        torch.randint(0, 2, (n,), generator=generator),
    )


class MyModel(nn.Module):
    """Your own feature extractor with agecurriculum's gender-conditioned head on top."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = GenderConditionedHead(in_features=16, age_classes=8, gender_classes=2, bottleneck_dim=32)

    def forward(self, x: torch.Tensor):
        return self.head(self.features(x))  # HeadOutput(age_logits, gender_logits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="folder for checkpoints (default: a temporary folder)")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train = {"mine": random_faces(64, generator), "public": random_faces(64, generator)}
    val = {"mine": random_faces(32, generator), "public": random_faces(32, generator)}

    # 1. Your loop: the head and the loss are ordinary modules.
    model, loss_fn = MyModel(), UncertaintyLoss()
    optimizer = torch.optim.AdamW([*model.parameters(), *loss_fn.parameters()], lr=1e-3)
    for images, age, gender in torch.utils.data.DataLoader(train["mine"], batch_size=16):
        parts = loss_fn(*model(images), age, gender)
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
    print(f"1. own loop: last loss {parts.total.item():.3f}, task weights {loss_fn.task_weights()}")

    # 2. Your loop over stages, the trainer's epoch and evaluation as building blocks.
    schedule = TrainingSchedule(
        [
            MultiDatasetSample(["mine"], bins={2, 3, 4, 5}),
            MultiDatasetSample(["mine", "public"], bins=range(8)),
        ]
    )
    trainer = CurriculumTrainer(MyModel(), schedule, train, val, config=TrainerConfig(batch_size=16))
    for stage in schedule:
        for name in stage.datasets:
            loss, _, _, seen = trainer.train_one_epoch(FilteredDataset(train[name], stage.bins))
            result = trainer.evaluate(FilteredDataset(val[name], stage.bins))
            print(
                f"2. stage bins {sorted(stage.bins)} on {name}: {seen} images, loss {loss:.3f}, "
                f"val age accuracy {result.age_accuracy:.2f}"
            )

    # 3. The whole curriculum with checkpoints; rerunning with resume=True continues after the last epoch.
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or tmp
        trainer = CurriculumTrainer(
            MyModel(), schedule, train, val, config=TrainerConfig(batch_size=16), run_dir=run_dir
        )
        history = trainer.fit(resume=True)
        print(f"3. fit: {len(history)} epochs, checkpoint in {run_dir}")


if __name__ == "__main__":
    main()
