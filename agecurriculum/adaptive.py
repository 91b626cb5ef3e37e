"""An adaptive multi-dataset curriculum: the next stage is chosen from per-(dataset, age bin) losses.

The paper's curricula are written by hand (:mod:`agecurriculum.schedule`); its future work asks for "an adaptive
algorithm that automatically learns a multi-dataset curriculum, based on loss values". :class:`AdaptiveCurriculum`
is one: a plain object, without torch, that is told the loss of the model on every *cell* ``(dataset, bin)`` after
each epoch (:meth:`~AdaptiveCurriculum.observe`) and at the end of each stage decides the next one
(:meth:`~AdaptiveCurriculum.next_stage`)::

    policy = AdaptiveCurriculum(["utkface", "adience", "morph2"], num_bins=8)
    stage = policy.next_stage(cell_losses(model))         # the first stage: settings.start_datasets / start_bins
    while stage is not None:
        for name in stage.datasets:
            for _ in range(stage.epochs):
                seen = train_one_epoch(name, stage.bins)
                policy.observe(cell_losses(model), images=seen)
        stage = policy.next_stage()
    policy.schedule().save("learned.json")               # replayable as a static TrainingSchedule

The decision rule, in order (every step is deterministic: the same losses give the same stages):

1. **Stop** when the image budget is spent, or, without a budget, when the complete set (every dataset, every bin)
   has reached a plateau or ``max_stages`` stages were emitted.
2. **Complete** (every remaining dataset and bin joins at once) when the budget left is at most
   ``final_share`` of it or one stage of the complete set (as far as ``train_sizes`` tells), or when only one
   stage of ``max_stages`` is left: so the last stage is complete.
3. After a revisit, **return** to the whole set; after ``max_stages_per_set`` stages on one set, **widen** (4).
4. **Revisit** (at most once per set): when a dataset of the current set has *forgotten*, i.e. its loss over the
   current bins rose more than ``forget_tolerance`` (relative) above its best since it joined, the next stage
   trains the forgotten datasets alone (on the current bins), and the stage after it the whole set again.
   Algorithm 1 trains the datasets of a stage one after the other, so the first ones are the ones that forget.
5. **Widen** when the last stage lowered the mean loss of the current set by less than ``min_improvement``
   (relative; a plateau): the easiest candidate joins, easiest by the current loss, where the candidates are the
   two bins next to the current range (the loss of a bin: its mean over the current datasets) and every dataset
   not yet in (its mean loss over the current bins). New datasets go last in the training order.
6. Otherwise **stay**: the same set again.

What this keeps of Eq. 7 (:func:`~agecurriculum.schedule.check_schedule`) by construction:

- ``nested-bins``: bins are only ever added (a revisit keeps the current bins);
- ``dataset-subsequence``: new datasets are appended, so each set's datasets are a prefix of the next one's, except
  that a **revisit** stage drops datasets: it breaks this rule (``revisit: false`` never does);
- ``increasing-score``: each stage's score is its position in the emitted order (1, 2, ...), as the paper's presets
  carry theirs; it holds and says nothing more;
- ``complete-last-stage``: the policy ends only after a complete stage (steps 1 and 2; revisits stop once the set
  is complete). With a budget this needs ``train_sizes`` (or a ``final_share`` large enough), and a trainer that
  ends the run on its own (early stopping over the run) can still end it before;
- ``bin-range``: bins are ``0 .. num_bins - 1``.

:meth:`AdaptiveCurriculum.schedule` returns the emitted stages as a :class:`~agecurriculum.schedule.TrainingSchedule`
(non-strict when a revisit broke a rule, with a warning per violation), which replays as a static curriculum.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agecurriculum.checks import as_int
from agecurriculum.fileio import atomic_write
from agecurriculum.schedule import MultiDatasetSample, TrainingSchedule, check_schedule, save_stages, stages_to_json

__all__ = ["ACTIONS", "AdaptiveSettings", "AdaptiveCurriculum", "Decision", "stage_images"]

ACTIONS = ("start", "stay", "widen-bins", "add-dataset", "revisit", "return", "complete", "stop")
Cell = tuple[str, int]


@dataclass
class AdaptiveSettings:
    """Settings of :class:`AdaptiveCurriculum`; ``RunConfig.adaptive`` holds them for ``schedule: adaptive``."""

    start_datasets: list[str] | None = None  # the first stage's datasets, in training order; None: the first dataset
    # of data.datasets that has training images
    start_bins: list[int] | None = None  # the first stage's age bins (contiguous); None: the middle third of the
    # bins ({3, 4, 5} of 8, where the paper's curricula start)
    epochs: int = 1  # epochs of each dataset in every stage the policy emits
    min_improvement: float = 0.02  # a stage that lowers the current set's mean validation loss by less than this
    # fraction of it is a plateau: the set widens (and the complete set, without a budget, stops)
    max_stages_per_set: int = 3  # widen after this many stages on one set even without a plateau
    revisit: bool = True  # train forgotten datasets again on their own for a stage (that stage breaks Eq. 7's
    # dataset-subsequence rule); false keeps every rule of Eq. 7
    forget_tolerance: float = 0.1  # a dataset whose loss over the current bins rose more than this fraction above
    # its best since it joined has forgotten
    final_share: float = 0.3  # with an image budget: once no more than this share of it is left, every remaining
    # dataset and bin joins at once (also once the budget left is one stage of the complete set)
    max_stages: int = 20  # the most stages the policy emits; the last one is complete


def _check_settings(s: AdaptiveSettings, datasets: tuple[str, ...], num_bins: int) -> None:
    # One home for the settings' ranges would be config.check_config; the policy is usable without a RunConfig, so
    # it checks what it relies on itself, naming the field.
    for name, low, high in (
        ("min_improvement", 0.0, 1.0),
        ("final_share", 0.0, 1.0),
        ("forget_tolerance", 0.0, math.inf),
    ):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
            raise ValueError(f"{name}: must be >= {low:g} and < {high:g}, got {value!r}")
    for name in ("epochs", "max_stages_per_set", "max_stages"):
        if as_int(getattr(s, name), name) < 1:
            raise ValueError(f"{name}: must be >= 1, got {getattr(s, name)!r}")
    for name in ("start_datasets", "start_bins"):
        value = getattr(s, name)
        if value is not None and not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list or null, got {value!r}")
    if not isinstance(s.revisit, bool):
        raise ValueError(f"revisit: expected true or false, got {s.revisit!r}")
    if s.start_datasets is not None:
        unknown = [d for d in s.start_datasets if d not in datasets]
        if unknown or not s.start_datasets or len(set(s.start_datasets)) != len(s.start_datasets):
            raise ValueError(f"start_datasets: expected distinct names from {list(datasets)}, got {s.start_datasets}")
    if s.start_bins is not None:
        bins = sorted({as_int(b, "start_bins") for b in s.start_bins})
        if not bins or bins[0] < 0 or bins[-1] >= num_bins or bins != list(range(bins[0], bins[-1] + 1)):
            raise ValueError(f"start_bins: expected contiguous bins within 0..{num_bins - 1}, got {s.start_bins}")


@dataclass(frozen=True)
class Decision:
    """One decision of the policy, for the log (``adaptive.json`` of a run).

    Attributes:
        stage: index of the stage decided (for ``stop``: the number of stages emitted).
        action: one of :data:`ACTIONS`.
        reason: why, in words, with the losses it compared.
        set_loss: mean loss of the current set's cells when deciding (None: not measured).
        images: training images seen when deciding.
    """

    stage: int
    action: str
    reason: str
    set_loss: float | None
    images: int


def stage_images(stage: MultiDatasetSample, train_sizes: Mapping[str, Mapping[int, int]]) -> int:
    """Training images of one stage: ``epochs`` times the images of each of its datasets in its bins.

    Args:
        stage: the stage.
        train_sizes: dataset -> age bin -> training images (images of unknown age, which join only stages with
            every bin, are not counted: the result is then a lower bound).
    """
    return stage.epochs * sum(train_sizes.get(d, {}).get(b, 0) for d in stage.datasets for b in stage.bins)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


class AdaptiveCurriculum:
    """Learns a multi-dataset curriculum from per-(dataset, bin) losses; see the module docstring for the rule.

    Args:
        datasets: every dataset the curriculum may use, in order (a dataset's place breaks ties between candidates).
        num_bins: number of age bins.
        settings: the policy's settings.
        budget: training images the whole curriculum may see (the policy stops once they are seen); None: no budget.
        train_sizes: dataset -> age bin -> training images, to keep a complete stage within the budget.

    Raises:
        ValueError: empty or repeated datasets, ``num_bins < 1``, a bad budget, or a bad setting (named).
    """

    def __init__(
        self,
        datasets: Sequence[str],
        num_bins: int = 8,
        settings: AdaptiveSettings | None = None,
        *,
        budget: int | None = None,
        train_sizes: Mapping[str, Mapping[int, int]] | None = None,
    ) -> None:
        self._datasets = tuple(datasets)
        if not self._datasets or len(set(self._datasets)) != len(self._datasets):
            raise ValueError(f"datasets: expected distinct dataset names, got {list(datasets)}")
        if as_int(num_bins, "num_bins") < 1:
            raise ValueError(f"num_bins: must be >= 1, got {num_bins}")
        if budget is not None and as_int(budget, "budget") < 1:
            raise ValueError(f"budget: must be >= 1 or None, got {budget}")
        self.settings = settings or AdaptiveSettings()
        _check_settings(self.settings, self._datasets, num_bins)
        self._num_bins, self.budget = num_bins, budget
        self.train_sizes = {d: {int(b): int(n) for b, n in sizes.items()} for d, sizes in (train_sizes or {}).items()}
        self._stages: list[MultiDatasetSample] = []
        self._decisions: list[Decision] = []
        self._active: tuple[tuple[str, ...], frozenset[int]] | None = None  # the current set (a revisit aside)
        self._latest: dict[Cell, float] = {}  # the last losses observed
        self._at_stage_start: dict[Cell, float] = {}  # the losses when the last stage was emitted
        self._best: dict[Cell, float] = {}  # per trained cell, its lowest loss since it joined
        self._stages_on_set = 0
        self._images = 0
        self._done = False

    # ------------------------------------------------------------------------------------------------ read-only

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset the curriculum may use."""
        return self._datasets

    @property
    def num_bins(self) -> int:
        """Number of age bins; the complete set has bins ``0 .. num_bins - 1``."""
        return self._num_bins

    @property
    def stages(self) -> tuple[MultiDatasetSample, ...]:
        """The stages emitted so far, first first."""
        return tuple(self._stages)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """Every decision so far, with its reason."""
        return tuple(self._decisions)

    @property
    def losses(self) -> dict[Cell, float]:
        """The latest loss of every cell observed so far."""
        return dict(self._latest)

    @property
    def images_seen(self) -> int:
        """Training images reported to :meth:`observe` so far."""
        return self._images

    @property
    def done(self) -> bool:
        """Whether the policy has stopped (:meth:`next_stage` returned None)."""
        return self._done

    # ------------------------------------------------------------------------------------------------ the loop

    def observe(self, losses: Mapping[Cell, float], images: int = 0) -> None:
        """Records the model's losses after an epoch (or any number of steps) and the training images it saw.

        Args:
            losses: ``(dataset, bin) -> loss`` (e.g. the mean validation cross-entropy of the cell's images); cells
                left out, or NaN, count as unknown. Later observations replace earlier ones cell by cell.
            images: training images seen since the last call.

        Raises:
            ValueError: an unknown dataset or bin, or negative images.
        """
        if as_int(images, "images") < 0:
            raise ValueError(f"images: must be >= 0, got {images}")
        for (name, b), loss in losses.items():
            if name not in self._datasets or not 0 <= b < self._num_bins:
                raise ValueError(
                    f"losses: unknown cell ({name!r}, {b}); datasets {list(self._datasets)}, "
                    f"bins 0..{self._num_bins - 1}"
                )
            self._latest[(name, int(b))] = float(loss)
        self._images += images
        for cell in self._trained_cells():
            loss = self._latest.get(cell, math.nan)
            if math.isfinite(loss) and not loss >= self._best.get(cell, math.inf):
                self._best[cell] = loss

    def next_stage(self, losses: Mapping[Cell, float] | None = None, images: int = 0) -> MultiDatasetSample | None:
        """Decides the stage to train next (the first one on the first call); None when the curriculum is over.

        Args:
            losses: if given, first :meth:`observe` them (with ``images``).
            images: training images seen since the last observation.
        """
        if losses is not None or images:
            self.observe(losses or {}, images)
        if self._done:
            return None
        action, reason, stage_set = self._decide()
        loss = self._set_loss(self._active, self._latest) if self._active else math.nan
        self._decisions.append(
            Decision(len(self._stages), action, reason, loss if math.isfinite(loss) else None, self._images)
        )
        if stage_set is None:
            self._done = True
            return None
        if action != "revisit":
            self._stages_on_set = 1 if stage_set != self._active else self._stages_on_set + 1
            self._active = stage_set
        stage = MultiDatasetSample(stage_set[0], stage_set[1], self.settings.epochs, score=len(self._stages) + 1)
        self._stages.append(stage)
        self._at_stage_start = dict(self._latest)
        return stage

    # The rest of the trainer's Curriculum protocol (agecurriculum.train.trainer), besides observe, next_stage, stop.

    decides_stages = True  # the trainer collects the per-(dataset, bin) losses for it

    def start(self, losses: Callable[[], Mapping[Cell, float]]) -> None:
        """Decides the first stage from ``losses()`` (the losses of the model before it trains), unless a stage was
        decided already or the curriculum is over (a resumed run): ``losses`` is then not called."""
        if not self._stages and not self._done:
            self.next_stage(losses())

    def save_run_files(self, run_dir: str | os.PathLike[str]) -> None:
        """Writes a run's ``learned_schedule.json`` (:meth:`save`) and ``adaptive.json`` (:meth:`save_log`) into
        ``run_dir``."""
        self.save(Path(run_dir) / "learned_schedule.json")
        self.save_log(Path(run_dir) / "adaptive.json")

    def stop(self, reason: str) -> None:
        """Ends the curriculum from outside (e.g. the trainer's budget or early stopping), recording ``reason``."""
        if not self._done:
            loss = self._set_loss(self._active, self._latest) if self._active else math.nan
            self._decisions.append(
                Decision(len(self._stages), "stop", reason, loss if math.isfinite(loss) else None, self._images)
            )
            self._done = True

    # ------------------------------------------------------------------------------------------------ the rule

    def _decide(self) -> tuple[str, str, tuple[tuple[str, ...], frozenset[int]] | None]:
        s = self.settings
        if self._active is None:
            return "start", "the settings' start_datasets and start_bins", self._start_set()
        complete = (self._datasets_in_order(self._active[0], self._datasets), frozenset(range(self._num_bins)))
        left = None if self.budget is None else self.budget - self._images
        if left is not None and left <= 0:
            return "stop", f"the image budget ({self.budget}) is spent ({self._images} seen)", None
        before, after = (self._set_loss(self._active, t) for t in (self._at_stage_start, self._latest))
        gain = (before - after) / before if before > 0 and math.isfinite(after) else math.nan
        plateau = math.isfinite(gain) and gain < s.min_improvement
        gain_text = (
            f"the last stage lowered the set's loss {before:.4g} -> {after:.4g} ({gain:+.1%})"
            if math.isfinite(gain)
            else "the set's loss change is not known"
        )
        if self._is_complete(self._active):
            if left is None and (plateau or len(self._stages) >= s.max_stages):
                why = gain_text if plateau else f"{s.max_stages} stages (max_stages) emitted"
                return "stop", f"complete set: {why}", None
            return "stay", f"complete set, {gain_text}", self._active
        if left is not None and left <= max(s.final_share * self.budget, self._complete_cost(complete)):
            return (
                "complete",
                (
                    f"{left} of {self.budget} budget images left (final_share {s.final_share}, a "
                    f"complete stage needs {self._complete_cost(complete)})"
                ),
                complete,
            )
        if len(self._stages) >= s.max_stages - 1:
            return "complete", f"one stage of max_stages ({s.max_stages}) left", complete
        if self._decisions[-1].action == "revisit":
            return "return", "back to the whole set after the revisit", self._active
        if self._stages_on_set >= s.max_stages_per_set:
            return self._widen(f"{gain_text}; {self._stages_on_set} stage(s) on this set (max_stages_per_set)")
        # One revisit per set: a dataset that is forgotten again after it was revisited is forgotten because
        # Algorithm 1 trains the others after it; revisiting it for ever would stall the curriculum.
        forgotten = [] if self._revisited_this_set() else self._forgotten()
        if forgotten:
            why = ", ".join(f"{d} +{rise:.1%}" for d, rise in forgotten)
            return (
                "revisit",
                f"forgotten (loss over the set's bins above its best): {why}",
                (tuple(d for d, _ in forgotten), self._active[1]),
            )
        if plateau:
            return self._widen(f"{gain_text} < min_improvement {s.min_improvement:.1%}")
        return "stay", gain_text, self._active

    def _start_set(self) -> tuple[tuple[str, ...], frozenset[int]]:
        s, n = self.settings, self._num_bins
        names = tuple(s.start_datasets) if s.start_datasets else self._datasets[:1]
        if s.start_bins is not None:
            return names, frozenset(s.start_bins)
        width = max(1, round(n / 3))
        low = (n - width + 1) // 2  # the upper middle when it cannot be centred: {3, 4, 5} of 0..7
        return names, frozenset(range(low, low + width))

    def _widen(self, why: str) -> tuple[str, str, tuple[tuple[str, ...], frozenset[int]]]:
        names, bins = self._active
        candidates: list[tuple[float, int, str, Any]] = []  # (loss, kind rank, label, the new set); bins rank first
        for b in (min(bins) - 1, max(bins) + 1):
            if 0 <= b < self._num_bins:
                loss = _mean([self._latest.get((d, b), math.nan) for d in names])
                candidates.append((loss, 0, f"bin {b}", (names, bins | {b})))
        for name in self._datasets:
            if name not in names:
                loss = _mean([self._latest.get((name, b), math.nan) for b in bins])
                candidates.append((loss, 1, name, (names + (name,), bins)))
        # Easiest first; a candidate whose loss is unknown (no validation images) only after every known one. The
        # sort is stable, so ties keep the order above: lower bin, higher bin, then datasets in the given order.
        candidates.sort(key=lambda c: (not math.isfinite(c[0]), c[0] if math.isfinite(c[0]) else 0.0))
        loss, kind, label, new_set = candidates[0]
        others = ", ".join(f"{c[2]} {c[0]:.4g}" for c in candidates[1:])
        action = "widen-bins" if kind == 0 else "add-dataset"
        return action, f"{why}; easiest candidate {label} (loss {loss:.4g}; others: {others or 'none'})", new_set

    def _revisited_this_set(self) -> bool:
        for decision in reversed(self._decisions):
            if decision.action == "revisit":
                return True
            if decision.action in ("start", "widen-bins", "add-dataset", "complete"):
                return False
        return False

    def _forgotten(self) -> list[tuple[str, float]]:
        names, bins = self._active
        if not self.settings.revisit or len(names) < 2:
            return []
        found = []
        for name in names:
            pairs = [(self._latest.get((name, b), math.nan), self._best.get((name, b), math.nan)) for b in bins]
            pairs = [(now, best) for now, best in pairs if math.isfinite(now) and math.isfinite(best)]
            best_sum = sum(best for _, best in pairs)
            if pairs and best_sum > 0:
                rise = (sum(now for now, _ in pairs) - best_sum) / best_sum
                if rise > self.settings.forget_tolerance:
                    found.append((name, rise))
        # Forgetting every dataset of the set is no reason to train a part of it: the set itself comes next.
        return found if len(found) < len(names) else []

    # ------------------------------------------------------------------------------------------------ helpers

    def _trained_cells(self) -> list[Cell]:
        # The cells of the stage now training: their losses since they joined give each cell's best.
        if not self._stages:
            return []
        last = self._stages[-1]
        return [(d, b) for d in last.datasets for b in last.bins]

    def _set_loss(self, cell_set: tuple[tuple[str, ...], frozenset[int]], losses: Mapping[Cell, float]) -> float:
        # Every cell counts once, whatever its number of images: the age bins weigh alike, as balancing makes them.
        return _mean([losses.get((d, b), math.nan) for d in cell_set[0] for b in sorted(cell_set[1])])

    def _is_complete(self, cell_set: tuple[tuple[str, ...], frozenset[int]]) -> bool:
        return set(cell_set[0]) == set(self._datasets) and cell_set[1] == frozenset(range(self._num_bins))

    def _datasets_in_order(self, current: tuple[str, ...], every: tuple[str, ...]) -> tuple[str, ...]:
        # The complete set appends the datasets not yet in, easiest (lowest loss over every bin) first.
        rest = [d for d in every if d not in current]
        losses = {d: _mean([self._latest.get((d, b), math.nan) for b in range(self._num_bins)]) for d in rest}
        rest.sort(key=lambda d: (not math.isfinite(losses[d]), losses[d] if math.isfinite(losses[d]) else 0.0))
        return current + tuple(rest)

    def _complete_cost(self, complete: tuple[tuple[str, ...], frozenset[int]]) -> int:
        if not self.train_sizes:
            return 0
        return stage_images(MultiDatasetSample(complete[0], complete[1], self.settings.epochs), self.train_sizes)

    # ------------------------------------------------------------------------------------------------ output

    def schedule(self, strict: bool | None = None) -> TrainingSchedule:
        """The emitted stages as a :class:`~agecurriculum.schedule.TrainingSchedule`, checked against Eq. 7.

        Args:
            strict: raise on a violation; None: strict unless a rule is broken (a revisit, or a curriculum stopped
                before a complete stage), which then warns once per violation.

        Raises:
            ScheduleError: no stage yet, or ``strict`` and a rule is broken.
        """
        if strict is None:
            strict = not self._stages or not check_schedule(
                self._stages, num_bins=self._num_bins, all_datasets=self._datasets
            )
        return TrainingSchedule(self._stages, num_bins=self._num_bins, all_datasets=self._datasets, strict=strict)

    def to_json(self) -> str:
        """The emitted stages in :meth:`TrainingSchedule.to_json`'s form (unchecked: usable mid-run)."""
        return stages_to_json(self._stages)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes :meth:`to_json` atomically; ``TrainingSchedule.load`` (or ``schedule: PATH``) replays it."""
        save_stages(path, self._stages)

    def save_log(self, path: str | os.PathLike[str]) -> None:
        """Writes the log of a run's ``adaptive.json`` atomically: :meth:`to_dict` and every :class:`Decision`."""
        log = {**self.to_dict(), "decisions": [asdict(d) for d in self._decisions]}
        atomic_write(path, (json.dumps(log, indent=2) + "\n").encode("utf-8"))

    def to_dict(self) -> dict[str, Any]:
        """What the curriculum is (not what it learned): datasets, bins, settings and budget."""
        return {
            "adaptive": asdict(self.settings),
            "datasets": list(self._datasets),
            "num_bins": self._num_bins,
            "budget": self.budget,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything the policy has learned, in plain JSON types: :meth:`load_state_dict` continues from it."""

        def table(t: Mapping[Cell, float]) -> list[list[Any]]:
            return [[d, b, v] for (d, b), v in sorted(t.items())]

        return {
            "stages": [stage.to_dict() for stage in self._stages],
            "decisions": [asdict(d) for d in self._decisions],
            "active": None if self._active is None else [list(self._active[0]), sorted(self._active[1])],
            "latest": table(self._latest),
            "at_stage_start": table(self._at_stage_start),
            "best": table(self._best),
            "stages_on_set": self._stages_on_set,
            "images": self._images,
            "done": self._done,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output (the same datasets, bins and settings are assumed)."""

        def table(rows: Sequence[Sequence[Any]]) -> dict[Cell, float]:
            return {(str(d), int(b)): float(v) for d, b, v in rows}

        self._stages = [MultiDatasetSample.from_dict(d) for d in state["stages"]]
        self._decisions = [Decision(**d) for d in state["decisions"]]
        active = state["active"]
        self._active = None if active is None else (tuple(active[0]), frozenset(active[1]))
        self._latest, self._at_stage_start = table(state["latest"]), table(state["at_stage_start"])
        self._best = table(state["best"])
        self._stages_on_set, self._images, self._done = (
            int(state["stages_on_set"]),
            int(state["images"]),
            bool(state["done"]),
        )
