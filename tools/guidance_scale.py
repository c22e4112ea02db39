"""The guidance-scale axis of the unconditional digits benchmark: epsilon, fd and FID against the scale.

    python tools/guidance_scale.py [--out results/guidance-scale] [--n-samples 200]

Runs, from baselines/digits-uncond.toml (same data, networks, sampler), one seed of:
- guided conditional sampling at each Bayes-rule guidance scale w of the model (``[model] guidance_scale``; w = 1 is Bayes' rule,
  w = 0 the unconditional model);
- distribution guidance at each step size gamma (``scale``; gamma = 0 is the unconditional model),
  toward the uniform distribution and toward 90% heavy strokes.
It writes the records (under --out), docs/guidance-scale.png (three panels: epsilon, fd, FID
against the scale, log-spaced) and the table docs/guidance-scale.md embeds. Records are
reused when run again. Cost at the default 200 samples: 10 jobs, about 10 minutes on 2 quiet CPU cores (about an hour on a loaded one).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fairbench.config import parse_grid, read_toml  # noqa: E402
from fairbench.runner import run_benchmark  # noqa: E402

BASE = "baselines/digits-uncond.toml"
BAYES_SCALES = [0.0, 0.5, 1.0, 2.0, 4.0]
DG_SCALES = [0.0, 300.0, 3000.0]


def grid(n_samples: int) -> dict:
    data = read_toml(BASE)
    data["benchmark"] = dict(data["benchmark"], name="guidance-scale", n_samples=n_samples, seeds=[0],
                             batch_size=min(n_samples, 500))
    model = data.pop("model")
    data["models"] = [dict(copy.deepcopy(model), guidance_scale=w, label=f"w={w:g}") for w in BAYES_SCALES]
    data["methods"] = [{"name": "conditional", "label": "guided conditional"}]
    return data


def distribution_grid(n_samples: int) -> dict:
    data = read_toml(BASE)
    data["benchmark"] = dict(data["benchmark"], name="guidance-scale-dg", n_samples=n_samples, seeds=[0],
                             batch_size=min(n_samples, 500))
    data["methods"] = [
        {"name": "distribution_guidance", "scale": DG_SCALES},
        # scale 0 is unconditional sampling whatever the target: measured once, in the row above
        {"name": "distribution_guidance", "label": "distribution guidance to 90% heavy", "scale": DG_SCALES[1:],
         "balance_target": [0.1, 0.9]},
    ]
    return data


def rows(records: list[dict]) -> list[dict]:
    out = []
    for record in records:
        m, spec = record["metrics"], record["spec"]
        method = spec["method"]
        if method["name"] == "distribution_guidance":
            scale, axis = method.get("scale", 1.0), "gamma"
            series = "distribution guidance" + (" to 90% heavy" if "balance_target" in method else " to uniform")
        else:
            scale, axis = spec["model"]["guidance_scale"], "w"
            series = record["label"].split("[")[0]
        heavy = m.get("judged_distribution_pooled")
        fid = next(v for k, v in m.items() if k.startswith("fid") and isinstance(v, float))
        out.append({"series": series, "axis": axis, "scale": float(scale), "epsilon": m["epsilon"], "fd": m["fd"],
                    "fd_pooled": m["fd_pooled"], "fid": fid, "heavy": heavy})
    return sorted(out, key=lambda r: (r["series"], r["scale"]))


def plot(table: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for series in sorted({r["series"] for r in table}):
        points = [r for r in table if r["series"] == series]
        xs = [r["scale"] for r in points]
        floor = min(x for x in xs if x > 0) / 3  # scale 0 drawn at a third of the smallest positive one
        xs = [x if x > 0 else floor for x in xs]
        for ax, key in zip(axes, ("epsilon", "fd", "fid")):
            ax.plot(xs, [r[key] for r in points], marker="o", label=f"{series} ({points[0]['axis']})")
    for ax, key in zip(axes, ("epsilon", "fd (worst requested group)", "FID (judge features)")):
        ax.set_xscale("log")
        ax.set_xlabel("guidance scale (0 drawn at the left end)")
        ax.set_title(key)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/guidance-scale")
    parser.add_argument("--n-samples", type=int, default=200)
    parser.add_argument("--docs", default="docs")
    args = parser.parse_args(argv)
    records = []
    for name, data in (("bayes", grid(args.n_samples)), ("distribution", distribution_grid(args.n_samples))):
        records += run_benchmark(parse_grid(data, source=f"{BASE} ({name} scale axis)"), Path(args.out) / name)
    table = rows(records)
    docs = Path(args.docs)
    plot(table, docs / "guidance-scale.png")
    (Path(args.out) / "axis.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    lines = ["| series | scale | epsilon | fd | fd_pooled | FID |", "|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['series']} | {r['axis']} = {r['scale']:g} | {r['epsilon']:.3f} | {r['fd']:.3f} | "
                     f"{r['fd_pooled']:.3f} | {r['fid']:.1f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
