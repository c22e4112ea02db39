"""Check `fairbench plan` by simulation on the analytic Gaussian model.

    python tools/plan_check.py [--seeds 100] [--draws 30]

1. Half-width from assumed values: the n planned for a half-width h of epsilon's interval at
   the exact TV of attribute switching at tau 320 (0.292); at that n, the mean half-width of
   `epsilon_ci` (logistic panel, 3 repeats, 8 refitted half-samples) over `--draws` draws.
2. Power from a pilot: a pilot run (500 per group, tau 280 and 320, exact TVs 0.1 apart) plans
   n for 80% power to detect 0.1; at that n, the fraction of `--seeds` seeds in which
   `compare` finds p_holm < 0.05.
3. Power from assumed values (no pairing credit: conservative): the same at that n.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from compare_power import job  # noqa: E402

from fairbench.compare import compare_records  # noqa: E402
from fairbench.methods import AttributeSwitching  # noqa: E402
from fairbench.metrics.fairness import epsilon_fairness  # noqa: E402
from fairbench.models.gaussian import GaussianModel, exact_switching_tv  # noqa: E402
from fairbench.planning import plan_from_jobs, plan_from_values  # noqa: E402
from fairbench.sampling import sample  # noqa: E402


def detection_rate(model, n: int, seeds: range) -> float:
    hits = 0
    for seed in seeds:
        jobs = [job(model, label, tau, seed, n, seed) for label, tau in (("tau=280", 280), ("tau=320", 320))]
        (c,) = compare_records(jobs, ["epsilon"], seed=seed)
        hits += c.p_holm < 0.05
    return hits / len(seeds)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--half-width", type=float, default=0.04)
    args = parser.parse_args(argv)
    model = GaussianModel([[-0.5, 0.0], [0.5, 0.0]], 0.5)
    start = time.perf_counter()

    tv = exact_switching_tv(model, 50, 320)
    (width_plan,) = plan_from_values(tv, half_width=args.half_width)
    n = width_plan.n_per_group
    halves = []
    for draw in range(args.draws):
        requested = torch.arange(2 * n) % 2
        out = sample(model, AttributeSwitching(320), requested, scheduler_name="ddim", steps=50, seed=500 + draw,
                     batch_size=len(requested))
        estimate = epsilon_fairness(out.samples.numpy(), requested.numpy(), learners=("logistic",), permutations=0,
                                    seed=500 + draw)
        halves.append((estimate.interval[1] - estimate.interval[0]) / 2)
    print(f"1. half-width {args.half_width} at TV {tv:.3f}: planned {n} per group; measured mean half-width "
          f"{np.mean(halves):.4f} (sd {np.std(halves, ddof=1):.4f}, {args.draws} draws), ratio {np.mean(halves) / args.half_width:.3f}",
          flush=True)

    pilot = [job(model, label, tau, 10_000, 500, 10_000) for label, tau in (("tau=280", 280), ("tau=320", 320))]
    (pilot_plan,) = plan_from_jobs(pilot, difference=0.1)
    rate = detection_rate(model, pilot_plan.n_per_group, range(args.seeds))
    print(f"2. power from a pilot (500 per group): planned {pilot_plan.n_per_group} per group (paired sd at n=1 "
          f"{pilot_plan.sd_at_one:.4f}); detected in {rate:.2f} of {args.seeds} seeds (target 0.80)", flush=True)

    (assumed_plan,) = plan_from_values(exact_switching_tv(model, 50, 280), difference=0.1)
    rate = detection_rate(model, assumed_plan.n_per_group, range(args.seeds))
    print(f"3. power from assumed values: planned {assumed_plan.n_per_group} per group (unpaired sd at n=1 "
          f"{assumed_plan.sd_at_one:.4f}); detected in {rate:.2f} of {args.seeds} seeds (target at least 0.80)", flush=True)
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
