"""The measured spread of the leaderboard metrics over retrains of the shipped networks.

Training on the CPU is seeded but not bitwise reproducible, so a rerun that retrains the
networks (the generator, the judge whose features epsilon and FID read, the guidance
classifier) moves every metric by more than its resampling interval. The spread was measured
by retraining the shipped digits config with its training seeds set to 1 (one retrain so far)
and running the default benchmark on it beside the shipped set (docs/networks.md, "Retrain spread of the
leaderboard metrics"); ``fairbench/networks/RETRAIN_SPREAD.json`` holds, per metric and
method, the standard deviation over those sets, with its provenance.

`retrain_spreads` gives one number per metric, the pooled standard deviation over the methods
(``sqrt(mean_m sd_m^2)``, `tools/retrain_spread.py`) (the second error bar of a leaderboard, the ``training_spread`` of `fairbench check`
and of `fairbench compare` across trainings). It applies to model kinds whose networks
fairbench trains, never to the analytic ``gaussian`` model. It was measured on digits only:
on other trained benchmarks (Fashion-MNIST, three-level digits) it is digits' spread, shown as
a stand-in until their own retrains are measured.
"""

from __future__ import annotations

import json
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


def retrain_spreads(model_kind: str | None = "unet", path: Path | None = None) -> dict[str, float]:
    """metric -> standard deviation of one training's value (pooled over methods); {} for
    untrained model kinds or when nothing was measured."""
    if model_kind is None or model_kind in UNTRAINED_KINDS:  # no model named: nothing known to spread
        return {}
    data = read_spread_file(path)
    return {name: float(entry["sd"]) for name, entry in data.get("metrics", {}).items()}
