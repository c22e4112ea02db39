"""Size of epsilon's permutation p-value on identical groups (the null holds exactly).

Two groups drawn from one 2-dim standard Gaussian, sample i requesting i mod 2; epsilon with
its default panel and permutations (interval settings as a run's defaults). Prints the share
of draws with p < 0.05 and p < 0.10 (a valid test: at most 0.05 and 0.10, up to the binomial
noise of the draws) and the mean and sd of the unclipped statistic.

    python tools/permutation_size.py --draws 100 --per-group 500
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fairbench.metrics.fairness import epsilon_fairness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--per-group", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    p_values, statistics = [], []
    for draw in range(args.draws):
        rng = np.random.default_rng(10_000 + draw)
        y = np.arange(2 * args.per_group) % 2
        x = rng.normal(size=(2 * args.per_group, 2))
        estimate = epsilon_fairness(x, y, permutations=1000, subsamples=0, seed=draw)
        p_values.append(estimate.p_value)
        statistics.append(estimate.statistic)
    p = np.array(p_values)
    print(f"{args.draws} draws, {args.per_group} per group: P(p < 0.05) = {np.mean(p < 0.05):.3f}, "
          f"P(p < 0.10) = {np.mean(p < 0.10):.3f}; statistic mean {np.mean(statistics):+.4f}, "
          f"sd {np.std(statistics, ddof=1):.4f} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
