"""The measured spread of the leaderboard metrics over retrains of the shipped networks.

Training on the CPU is seeded but not bitwise reproducible, so a rerun that retrains the
networks (the generator, the judge whose features epsilon and FID read, the guidance
classifier) moves every metric by more than its resampling interval. The spread was measured
by retraining the shipped digits config with its training seeds set to 1-5 (five retrains)
and running the default benchmark on it beside the shipped set (docs/networks.md, "Retrain spread of the
leaderboard metrics"); ``fairbench/networks/RETRAIN_SPREAD.json`` holds, per metric and
method, the standard deviation over those sets, with its provenance.

`RetrainSpread.sd(metric, method)` is a method's own standard deviation where that method was
retrained, and for other methods the pooled standard deviation over the retrained ones
(``sqrt(mean_m sd_m^2)``, `tools/retrain_spread.py`; `RetrainSpread.pooled`): the second error bar of a leaderboard, the training spread of `fairbench check`
and of `fairbench compare` across trainings. Methods differ: Algorithm 2's tau jumps between
retrains (260-280 in some, 480-500 in others), so attribute switching's epsilon spreads
twenty times as much as conditional sampling's. It applies to model kinds whose networks
fairbench trains, never to the analytic ``gaussian`` model. It was measured on digits only:
on other trained benchmarks (Fashion-MNIST, three-level digits) it is digits' spread, shown as
a stand-in until their own retrains are measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FairbenchError

SPREAD_FILE = Path(__file__).parent / "networks" / "RETRAIN_SPREAD.json"
UNTRAINED_KINDS = ("gaussian",)  # analytic models: nothing is trained, nothing spreads


def read_spread_file(path: Path | None = None) -> dict:
    """The whole file (``{"provenance": ..., "metrics": {metric: {"sd": x, "by_method": {...}}}}``); {} if absent."""
    path = SPREAD_FILE if path is None else path
    if not Path(path).exists():
        return {}
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FairbenchError(f"retrain spread file {str(path)!r} is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class RetrainSpread:
    """The measured spread, per method where that method was retrained, pooled otherwise."""

    pooled: dict[str, float] = field(default_factory=dict)  # metric -> sqrt(mean over methods of sd^2)
    by_method: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> method label -> sd

    @classmethod
    def measured(cls, model_kind: str | None = "unet", path: Path | None = None) -> "RetrainSpread":
        """The spread file's values; empty for untrained model kinds (or no model named)."""
        if model_kind is None or model_kind in UNTRAINED_KINDS:
            return cls()
        metrics = read_spread_file(path).get("metrics", {})
        return cls(
            pooled={name: float(entry["sd"]) for name, entry in metrics.items()},
            by_method={name: {label: float(m["sd"]) for label, m in entry.get("by_method", {}).items()}
                       for name, entry in metrics.items()},
        )

    def sd(self, metric: str, method: str | None = None) -> float | None:
        """The method's own retrain sd of `metric` where it was measured (methods differ: a
        searched tau can jump between retrains where conditional sampling barely moves), the
        pooled value for other methods, None where the metric was not measured."""
        own = self.by_method.get(metric, {})
        return own[method] if method in own else self.pooled.get(metric)
