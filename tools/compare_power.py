"""Power and false-alarm rate of `fairbench compare` on the analytic Gaussian model.

    python tools/compare_power.py [--seeds 100] [--per-group 1000]

Two means (-0.5, 0), (0.5, 0), std 0.5, DDIM 50 steps. Per seed, each method's samples are
drawn with that seed's noise (the harness's paired design), epsilon is estimated with
logistic regression (Bayes-optimal for these Gaussians) and its held-out predictions, and the
exact posterior judge labels each sample (fd); `compare_records` then tests every pair. Cases:

- planted: attribute switching at tau 280 and 320 (exact TV 0.192 and 0.292: 0.1 apart);
- same method, two labels: tau 320 twice with the same noise (what two labels of one method
  are in a run);
- same method, independent noise: tau 320 with the seed's noise and with other noise (equal
  truth, no pairing): the intervals' calibration.

Prints, per case, the fraction of seeds with p_holm < 0.05 for epsilon alone and for epsilon
and fd together (Holm over both).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from fairbench.compare import _Job, compare_records, held_out_votes
from fairbench.methods import AttributeSwitching
from fairbench.metrics.fairness import epsilon_fairness
from fairbench.models.gaussian import GaussianModel, bayes_judge, exact_switching_tv
from fairbench.sampling import sample


def job(model: GaussianModel, label: str, tau: int, seed: int, n_per_group: int, noise_seed: int) -> _Job:
    requested = torch.arange(2 * n_per_group) % 2
    out = sample(model, AttributeSwitching(tau), requested, scheduler_name="ddim", steps=50, seed=noise_seed,
                 batch_size=len(requested))
    estimate = epsilon_fairness(out.samples.numpy(), requested.numpy(), learners=("logistic",), repeats=1, subsamples=0,
                                permutations=0, bootstrap=1, seed=seed)
    evidence = {
        "requested": requested.numpy(), "epsilon_votes": held_out_votes(estimate, len(requested)), "epsilon_pair": np.array(estimate.pair),
        "judge_label": bayes_judge(model, out.samples).argmax(1).numpy(), "balance_target": np.array([0.5, 0.5]),
    }
    return _Job(label, seed, {"label": label, "spec": {"benchmark": "g", "seed": seed}, "metrics": {}}, evidence)


CASES = {
    "planted (TV 0.192 vs 0.292)": lambda s: [("tau=280", 280, s), ("tau=320", 320, s)],
    "one method, two labels": lambda s: [("a", 320, s), ("b", 320, s)],
    "one method, independent noise": lambda s: [("a", 320, s), ("b", 320, 100_000 + s)],
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--per-group", type=int, default=1000)
    parser.add_argument("--replicates", type=int, default=1000)
    args = parser.parse_args(argv)
    model = GaussianModel([[-0.5, 0.0], [0.5, 0.0]], 0.5)
    print(f"exact TV: tau 280 {exact_switching_tv(model, 50, 280):.4f}, tau 320 {exact_switching_tv(model, 50, 320):.4f}")
    print(f"{args.seeds} seeds, {args.per_group} samples per group, {args.replicates} bootstrap replicates\n")
    print("| case | p_holm < 0.05, epsilon alone | p_holm < 0.05 for epsilon, with fd (Holm over 2) | mean difference | mean interval half-width |")
    print("|---|---|---|---|---|")
    start = time.perf_counter()
    for name, pairs in CASES.items():
        alone = both = 0
        differences, halves = [], []
        for seed in range(args.seeds):
            jobs = [job(model, label, tau, seed, args.per_group, noise) for label, tau, noise in pairs(seed)]
            (epsilon,) = compare_records(jobs, ["epsilon"], replicates=args.replicates, seed=seed)
            together = compare_records(jobs, ["epsilon", "fd"], replicates=args.replicates, seed=seed)
            alone += epsilon.p_holm < 0.05
            both += next(c for c in together if c.metric == "epsilon").p_holm < 0.05
            differences.append(epsilon.difference)
            halves.append((epsilon.interval[1] - epsilon.interval[0]) / 2)
        print(f"| {name} | {alone}/{args.seeds} | {both}/{args.seeds} | {np.mean(differences):+.4f} | {np.mean(halves):.4f} |",
              flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
