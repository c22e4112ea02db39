"""Coverage of sequential sample sizes (fairbench.sequential) by simulation, with known TV.

Two groups, N(-d/2 e_1, I_2) and N(d/2 e_1, I_2), whose total variation is ``2 Phi(d/2) - 1``;
the panel is logistic regression alone, Bayes-optimal here, so epsilon's interval targets
the TV itself; every other epsilon setting is the ``[metrics]`` default a run uses. Each draw generates ``max`` samples (sample i requests i mod 2) and measures
epsilon at every look of the schedule on the first n samples, as a sequential job does.
Printed per TV (markdown):

- the stopping look's coverage under the half-width rule, with every look at the per-look
  level (what `fairbench run` reports) and, for contrast, at the nominal level;
- the coverage of all looks at once (what makes any stopping rule valid), both ways;
- the mean samples used and the share of draws that stopped before ``max``.

    python tools/sequential_coverage.py --draws 200 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from statistics import NormalDist

import numpy as np


def _one(args):
    tv, draw, spec, confidence = args
    from fairbench.metrics.suite import SuiteOptions, estimate_epsilon

    d = 2.0 * NormalDist().inv_cdf((1.0 + tv) / 2.0)
    rng = np.random.default_rng([draw, int(round(tv * 1000))])
    y = np.arange(spec.max) % 2
    x = rng.normal(size=(spec.max, 2))
    x[:, 0] += (y - 0.5) * d
    level = spec.look_confidence(confidence)
    # the [metrics] defaults a run uses (normal interval, no refitted half-samples), logistic panel
    options = SuiteOptions(epsilon_learners=("logistic",), epsilon_permutations=0, confidence=level)
    z_look, z_nominal = (NormalDist().inv_cdf((1.0 + c) / 2.0) for c in (level, confidence))
    looks = []
    for n in spec.looks:
        e = estimate_epsilon({"features": x[:n]}, y[:n], options, seed=draw)
        raw = float(e.statistic)
        low, high = e.interval
        # the unclipped half-width, from a side the clipping to [0, 1] left alone
        half = high - raw if high < 1.0 else raw - low
        nominal = (max(raw - half * z_nominal / z_look, 0.0), min(raw + half * z_nominal / z_look, 1.0))
        nominal = (min(nominal[0], e.value), max(nominal[1], e.value))
        looks.append((n, (low, high), nominal))
    return tv, looks


def main() -> None:
    from fairbench.sequential import SequentialSamples

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--half-width", type=float, default=0.03)
    parser.add_argument("--start", type=int, default=1000)
    parser.add_argument("--max", type=int, default=8000)
    parser.add_argument("--tv", type=float, nargs="+", default=[0.0, 0.3, 0.6, 0.9])
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    spec = SequentialSamples(half_width=args.half_width, max=args.max, start=args.start)
    spec.validate("sequential")
    started = time.perf_counter()
    tasks = [(tv, draw, spec, args.confidence) for tv in args.tv for draw in range(args.draws)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(_one, tasks, chunksize=4))

    def covers(interval, tv):
        return interval[0] <= tv <= interval[1]

    print(f"Looks at n = {', '.join(map(str, spec.looks))} (samples, both groups), stop at half-width <= "
          f"{spec.half_width}; per-look level {spec.look_confidence(args.confidence):.4f}, nominal "
          f"{args.confidence}; {args.draws} draws per row; logistic panel (Bayes-optimal).\n")
    print("| TV | stopped interval covers (per-look level) | same, nominal level | all looks cover (per-look) "
          "| all looks cover (nominal) | mean n used | stopped before max |")
    print("|---|---|---|---|---|---|---|")
    for tv in args.tv:
        rows = [looks for t, looks in results if t == tv]
        stopped, stopped_nominal, all_look, all_nominal, used = [], [], [], [], []
        for looks in rows:
            chosen = next((i for i, (_, interval, _) in enumerate(looks) if spec.narrow_enough(interval)), len(looks) - 1)
            chosen_nominal = next((i for i, (_, _, interval) in enumerate(looks) if spec.narrow_enough(interval)),
                                  len(looks) - 1)
            stopped.append(covers(looks[chosen][1], tv))
            stopped_nominal.append(covers(looks[chosen_nominal][2], tv))
            all_look.append(all(covers(interval, tv) for _, interval, _ in looks))
            all_nominal.append(all(covers(interval, tv) for _, _, interval in looks))
            used.append(looks[chosen][0])
        print(f"| {tv:g} | {np.mean(stopped):.3f} | {np.mean(stopped_nominal):.3f} | {np.mean(all_look):.3f} | "
              f"{np.mean(all_nominal):.3f} | {np.mean(used):.0f} | {np.mean(np.array(used) < spec.max):.2f} |")
    print(f"\n{len(tasks)} draws in {time.perf_counter() - started:.0f} s with {args.jobs} worker(s) "
          f"on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
