"""The metrics table of the documentation, generated from `METRICS`.

``python -m fairbench.metrics.docs [PATH]`` writes it (default ``docs/metrics.md``); a test
checks the committed file is up to date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import METRICS

BETTER = {"lower": "lower", "higher": "higher", "none": "-"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def metrics_markdown() -> str:
    """A Markdown page: one row per metric with its formula, direction, interval and citation."""
    lines = [
        "# Metrics",
        "",
        "Generated from `fairbench.metrics.METRICS` by `python -m fairbench.metrics.docs`; do not edit by hand.",
        "Each name is a key of a record's `metrics`. Metrics keyed by another field (e.g. `fid` by",
        "`fid_features`) are only compared between records that agree on it; leaderboards give each",
        "value its own column (`fid@raw`, `fid@inception-v3`).",
        "",
        "| metric | formula | better | interval | keyed by | citation | cannot see |",
        "|---|---|---|---|---|---|---|",
    ]
    for info in METRICS.values():
        interval = f"`{info.interval}`: {info.interval_method}" if info.interval else "-"
        keyed = f"`{info.keyed_by}`" if info.keyed_by else "-"
        lines.append(
            f"| `{info.name}` | {_cell(info.formula)} | {BETTER[info.direction]} | {_cell(interval)} | {keyed} | {_cell(info.citation)} | {_cell(info.blind_spot) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def write_metrics_doc(path: str | Path = "docs/metrics.md") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(metrics_markdown(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_metrics_doc(*sys.argv[1:2]))
