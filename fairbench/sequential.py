"""Sequential sample sizes: sample in rounds until epsilon's interval is as narrow as asked.

``n_samples = { half_width = 0.03, max = 8000 }`` in ``[benchmark]`` makes a job sample
``start`` samples, measure epsilon, and keep doubling (``growth``) until the half-width of
epsilon's interval is at most ``half_width`` or ``max`` samples are reached. Samples are
seeded by their index, so each round extends the previous one: the samples of a job that
stops at n are the first n samples of the fixed-size run.

Stopping on the data must not break coverage. The looks are fixed before any sample is
drawn (`SequentialSamples.looks`: L sizes), and every look's interval is computed at level
``1 - alpha / L`` (`look_confidence`). By the union bound, with probability at least
``1 - alpha`` every look's interval covers its target at once, so the interval reported at
any look chosen from the data (the half-width rule or any other) covers with probability at
least ``1 - alpha``: a confidence sequence over the looks (Bonferroni over a geometric
schedule, the simplest "stitched" construction). With doubling from 1000 to 8000 there are
four looks, and each interval is ``z_{1 - 0.0125/2} / z_{0.975} = 1.27`` times as wide as a
single 95% interval at the same n. Mixture-martingale sequences (Howard et al., 2021) are
tighter for running means of bounded variables; epsilon is a refitted classifier's
held-out accuracy, not a running mean, so the union bound over few looks is the
construction whose validity needs nothing more than each look's own interval.
``tools/sequential_coverage.py`` shows the coverage by simulation (docs/compare.md,
"Stopping when the answer is clear").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import FairbenchError


@dataclass(frozen=True)
class SequentialSamples:
    """``[benchmark] n_samples`` as a table: sample in rounds until epsilon's half-width is at most `half_width`."""

    half_width: float
    max: int
    start: int = 1000
    growth: float = 2.0

    def validate(self, where: str) -> None:
        if not 0.0 < self.half_width < 1.0:
            raise FairbenchError(f"{where}.half_width must be in (0, 1), got {self.half_width}")
        if self.start < 2:
            raise FairbenchError(f"{where}.start must be at least 2, got {self.start}")
        if self.max < self.start:
            raise FairbenchError(f"{where}.max must be at least start ({self.start}), got {self.max}")
        if self.growth <= 1.0:
            raise FairbenchError(f"{where}.growth must be above 1, got {self.growth}")

    @property
    def looks(self) -> tuple[int, ...]:
        """The sample sizes at which epsilon is measured: ``start``, times ``growth`` each
        round (rounded up), the last one ``max``. Fixed before sampling: the level of every
        look depends on their number."""
        sizes = [self.start]
        while sizes[-1] < self.max:
            sizes.append(min(self.max, math.ceil(sizes[-1] * self.growth)))
        return tuple(sizes)

    def look_confidence(self, confidence: float) -> float:
        """The level of each look's interval: ``1 - (1 - confidence) / L``, L looks."""
        return 1.0 - (1.0 - confidence) / len(self.looks)

    def narrow_enough(self, interval: tuple[float, float] | list[float]) -> bool:
        """The stopping rule: the interval's half-width is at most ``half_width``."""
        return half_width(interval) <= self.half_width

    def as_json(self) -> dict[str, Any]:
        return {"half_width": self.half_width, "max": self.max, "start": self.start, "growth": self.growth}


def half_width(interval: tuple[float, float] | list[float]) -> float:
    """Half the length of an interval (after clipping to [0, 1]: what a reader sees)."""
    low, high = interval
    return (high - low) / 2.0


@dataclass(frozen=True)
class Look:
    n: int
    epsilon: float
    interval: tuple[float, float]

    @property
    def half_width(self) -> float:
        return half_width(self.interval)

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "epsilon": self.epsilon, "interval": list(self.interval), "half_width": self.half_width}


def run_looks(spec: SequentialSamples, measure: Callable[[int], tuple[float, tuple[float, float]]]) -> list[Look]:
    """Measure at each look of `spec` in turn (`measure(n)` returns epsilon and its interval at
    the per-look level) and stop at the first whose half-width is at most ``spec.half_width``,
    or at the last look. Returns the looks taken; the last is the one reported."""
    taken: list[Look] = []
    for n in spec.looks:
        value, interval = measure(n)
        taken.append(Look(n, float(value), (float(interval[0]), float(interval[1]))))
        if spec.narrow_enough(taken[-1].interval):
            break
    return taken
