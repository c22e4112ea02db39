"""Wall time of the epsilon estimators at the benchmarks' sizes (run: python benchmarks/epsilon_cost.py).

Prints seconds per call for the panel estimator (default settings) and the single logistic
regression, on 1000 vs 1000 samples of 64 dims (two feature spaces, as the digits suite
passes judge features and raw pixels) and on 2000 vs 2000 samples of a 2-dim Gaussian.
"""

from __future__ import annotations

import time

import numpy as np

from fairbench.metrics.fairness import epsilon_fairness, epsilon_linear


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """CPU seconds of this process (the machine may be shared: wall time would measure the others)."""
    start = time.process_time()
    result = fn(*args, **kwargs)
    return time.process_time() - start, result


def main() -> None:
    rng = np.random.default_rng(0)
    cases = {}
    requested = np.arange(2000) % 2
    pixels = rng.normal(size=(2000, 64)) * np.where(requested[:, None] == 1, 1.2, 1.0)
    judge = rng.normal(size=(2000, 128))
    cases["1000 vs 1000, 64 dims"] = (pixels, requested)
    cases["1000 vs 1000, spaces judge (128) + raw (64)"] = ({"judge": judge, "raw": pixels}, requested)
    cases["500 vs 500, spaces judge (128) + raw (64) (digits default)"] = (
        {"judge": judge[:1000], "raw": pixels[:1000]}, requested[:1000])
    requested = np.arange(4000) % 2
    cases["2000 vs 2000, 2-dim Gaussian"] = (rng.normal(size=(4000, 2)) + 0.5 * requested[:, None], requested)
    for name, (x, y) in cases.items():
        seconds, estimate = timed(epsilon_fairness, x, y)
        line = f"{name}: panel {seconds:.2f} CPU s (epsilon {estimate.value:.3f}, {estimate.learner}@{estimate.feature_space})"
        if not isinstance(x, dict):
            seconds, linear = timed(epsilon_linear, x, y)
            line += f"; linear {seconds:.2f} CPU s (epsilon {linear.value:.3f})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
