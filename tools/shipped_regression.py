"""Write tests/data/shipped_digits_small.json: the metrics of a small run of the shipped networks.

    python tools/shipped_regression.py

The run is the embedded default benchmark (its networks, data and judge) cut down to 128
samples, 10 DDIM steps and two methods, so the test that compares with these values
(tests/test_shipped.py) takes seconds. Regenerate it only when a change is meant to move the
numbers (new networks, a changed sampler or metric), and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from shipped_small import COMPARED, small_run  # noqa: E402

if __name__ == "__main__":
    values = {label: {name: metrics[name] for name in COMPARED if name in metrics} for label, metrics in small_run().items()}
    path = ROOT / "tests" / "data" / "shipped_digits_small.json"
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path}")
