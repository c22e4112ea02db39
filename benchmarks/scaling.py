"""Seconds per measured job as the number of samples grows (run: python benchmarks/scaling.py).

A measured job is `fairbench.metrics.suite.evaluate` on n generated samples of a d-dimensional
two-value Gaussian model (mean shift 1 along the first axis, unit variance), with n real
reference samples and n real training samples, a judge, a target judge (the sign of the second
coordinate) and utility: every metric the suite computes (epsilon, epsilon_linear, balance,
bias inheritance, FID/KID, utility). Samples are drawn from the data distribution itself, so only
the measurement is timed. Each (d, n) point runs in its own process with a time limit; the
epsilon estimate inside the job is timed on its own too.

Prints, and appends to ``--out`` (JSON lines), per point: wall and CPU seconds of the job and of
its epsilon estimate, and the growth factor per 4x samples. To time another checkout of
fairbench (for example the code before a change), put it first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time


def _point(dim: int, n: int, queue) -> None:
    import numpy as np
    import torch

    import fairbench
    import fairbench.metrics.suite as suite
    from fairbench.models import GaussianSpec, RealData

    spent = {"epsilon_wall": 0.0, "epsilon_cpu": 0.0}
    estimator = suite.epsilon_fairness

    def timed_epsilon(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return estimator(*args, **kwargs)
        finally:
            spent["epsilon_wall"] += time.perf_counter() - wall
            spent["epsilon_cpu"] += time.process_time() - cpu

    suite.epsilon_fairness = timed_epsilon
    mean = [0.5] + [0.0] * (dim - 1)
    setup = GaussianSpec(kind="gaussian", means=[[-m for m in mean], mean], std=1.0, n_real=n).build()
    model = setup.model
    reader = torch.zeros(dim, 2, dtype=torch.float64)
    reader[min(1, dim - 1)] = torch.tensor([-4.0, 4.0], dtype=torch.float64)

    def target_judge(x):
        return torch.log_softmax(x.to(torch.float64) @ reader, dim=1)

    def target_of(x):
        return (x[:, min(1, dim - 1)] > 0).long()

    real = setup.real
    real = dataclasses.replace(
        real, target=target_of(real.samples), target_values=("negative", "positive"),
        train=dataclasses.replace(real.train, target=target_of(real.train.samples)),
    )
    setup = dataclasses.replace(setup, real=real, target_judge=target_judge)
    requested = torch.arange(n) % 2
    samples = model.sample_data(requested, torch.Generator().manual_seed(2))
    wall, cpu = time.perf_counter(), time.process_time()
    metrics = suite.evaluate(samples, requested, setup, seed=0)
    queue.put({
        "dim": dim, "n": n, "job_wall": time.perf_counter() - wall, "job_cpu": time.process_time() - cpu,
        **spent, "epsilon": metrics["epsilon"], "fairbench": os.path.dirname(fairbench.__file__),
        "measured": sorted(k for k in metrics if not k.endswith("_by_group")),
    })


def markdown_table(paths: list[str]) -> str:
    """The JSON lines of one or more runs as a Markdown table: CPU seconds of the job and of epsilon,
    and their growth per 4x samples."""
    rows = [json.loads(line) for path in paths for line in open(path, encoding="utf-8") if line.strip()]
    lines = ["| code | dim | samples | job CPU s | job growth / 4x | epsilon CPU s | epsilon growth / 4x | job wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["label"], r["dim"], r["n"])):
        if "job_cpu" not in r:
            lines.append(f"| {r['label']} | {r['dim']} | {r['n']} | {'timed out' if 'timeout' in r else 'failed'} "
                         "| | | | |")
            continue
        growth = lambda key: f"{r[key]:.1f}x" if key in r else "-"
        lines.append(f"| {r['label']} | {r['dim']} | {r['n']} | {r['job_cpu']:.1f} | {growth('job_growth_cpu')} "
                     f"| {r['epsilon_cpu']:.1f} | {growth('epsilon_growth_cpu')} | {r['job_wall']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000,16000,64000")
    parser.add_argument("--dims", default="2,64,512")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per point; larger sizes of a "
                        "dimension are skipped after one point runs out")
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", default=None, help="append JSON lines here")
    parser.add_argument("--table", nargs="+", metavar="JSONL", help="print the Markdown table of earlier runs and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(args.table))
        return
    context = multiprocessing.get_context("spawn")
    for dim in map(int, args.dims.split(",")):
        previous = None
        for n in map(int, args.sizes.split(",")):
            queue = context.Queue()
            process = context.Process(target=_point, args=(dim, n, queue))
            process.start()
            process.join(args.timeout)
            if process.is_alive():
                process.terminate()
                row = {"dim": dim, "n": n, "timeout": args.timeout}
            elif process.exitcode != 0:
                row = {"dim": dim, "n": n, "error": process.exitcode}
            else:
                row = queue.get()
                if previous is not None and previous.get("n") * 4 == n and "job_cpu" in previous:
                    row["job_growth_cpu"] = row["job_cpu"] / previous["job_cpu"]
                    row["epsilon_growth_cpu"] = row["epsilon_cpu"] / previous["epsilon_cpu"]
            row["label"] = args.label
            print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()
                              if k != "measured"}), flush=True)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            previous = row
            if "timeout" in row or "error" in row:
                break


if __name__ == "__main__":
    sys.exit(main())
