"""Measure the retrain spread of every leaderboard metric and write fairbench/networks/RETRAIN_SPREAD.json.

    # each retrain: the shipped config with its training seeds changed, trained into its own cache
    FAIRBENCH_CACHE=/tmp/r1 fairbench train seed1.toml && FAIRBENCH_CACHE=/tmp/r1 fairbench run seed1.toml --out /tmp/run1
    python tools/retrain_spread.py --shipped leaderboards/digits /tmp/run1 [/tmp/run2 ...]

Records are matched by (label, seed); `--shipped` holds the records of the shipped networks.
For each metric and method, the values over the sets (shipped and retrains) give a standard
deviation (ddof 1); a metric's spread is the pooled standard deviation over the methods,
``sqrt(mean_m sd_m^2)``. Each set's samples differ too (other networks draw other samples
from the same noise), so the spread includes the resampling noise at the run's sample size:
it is what a rerun on a retrained set moves a number by.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fairbench.records import MACHINE_METRICS, git_sha, read_records
from fairbench.retrain_spread import SPREAD_FILE

SKIPPED = (*MACHINE_METRICS, "epsilon_p_value")  # the machine, and a test's p-value: not measurements


def scalars(record: dict) -> dict[str, float]:
    return {name: float(value) for name, value in record["metrics"].items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in SKIPPED}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="results directories of runs on retrained networks")
    parser.add_argument("--shipped", required=True, help="records of the shipped networks (a results directory)")
    parser.add_argument("--out", default=str(SPREAD_FILE))
    parser.add_argument("--note", default="", help="how the retrains were made")
    args = parser.parse_args(argv)
    sets = [read_records(Path(args.shipped))] + [read_records(Path(run)) for run in args.runs]
    keys = [{(r["label"], r["spec"]["seed"]) for r in records} for records in sets[1:]]
    common = set.intersection(*keys)
    by_set = [{(r["label"], r["spec"]["seed"]): r for r in records} for records in sets]
    metrics: dict[str, dict] = {}
    for key in sorted(common):
        values = [scalars(index[key]) for index in by_set]
        for name in set.intersection(*(set(v) for v in values)):
            column = [v[name] for v in values]
            entry = metrics.setdefault(name, {"by_method": {}})
            entry["by_method"][key[0]] = {"values": column, "sd": float(np.std(column, ddof=1))}
    for name, entry in metrics.items():
        entry["sd"] = float(np.sqrt(np.mean([m["sd"] ** 2 for m in entry["by_method"].values()])))
        entry["sets"] = len(sets)
    out = {
        "provenance": {
            "shipped": str(args.shipped), "retrains": [str(r) for r in args.runs], "methods_seeds": sorted(map(list, common)),
            "rule": "per method: sd (ddof 1) over the shipped set and the retrains; per metric: sqrt(mean over methods of sd^2)",
            "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d", time.gmtime()), "note": args.note,
        },
        "metrics": dict(sorted(metrics.items())),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    for name, entry in sorted(metrics.items()):
        print(f"{name}: sd {entry['sd']:.4g} over {entry['sets']} sets")


if __name__ == "__main__":
    main(sys.argv[1:])
