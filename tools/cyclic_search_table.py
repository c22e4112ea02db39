"""The cyclic-switching searches on the analytic Gaussian model, scored against the exact answer.

    python tools/cyclic_search_table.py [--sweep]

For k = 3 and 4 values (means below, data std 0.45), three noise schedules and DDIM at 40 and
50 steps: the solved points (`exact_cyclic_points`, exact TV 0 with the straddled steps
mixed), the best points on the grid (`exact_cyclic_grid_optimum`), the best single switch
(`attribute_switching` at its best tau), and each search's points, exact max pairwise TV and
cost in model evaluations (search batch 256 per group, seed 0); for the searches that refine
their points between visited steps, also the grid points they refined from. `--sweep` adds the
sweep (the epsilon estimator along each point; slow).
"""

from __future__ import annotations

import sys
import time

from fairbench.methods import BETWEEN_STEPS_SEARCHES, AttributeSwitching
from fairbench.models.gaussian import (
    GaussianModel, ddim_coefficients, exact_cyclic_grid_optimum, exact_cyclic_points, exact_cyclic_tv, exact_run_metrics,
)
from fairbench.tau_search import CYCLIC_SEARCHES

MEANS = {3: [[-0.5, -0.3], [0.5, -0.3], [0.0, 0.5]], 4: [[-0.5, -0.3], [0.5, -0.3], [0.4, 0.5], [-0.3, 0.6]]}
SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}


def main(sweep: bool) -> None:
    searches = ["reference", "direct"] + (["sweep"] if sweep else [])
    head = ["schedule", "DDIM steps", "k", "solved points", "best single-switch TV", "grid optimum", "TV at grid optimum"]
    for name in searches:
        head += [f"{name} points", f"TV at {name}", f"NFE {name}"]
        if name in BETWEEN_STEPS_SEARCHES:
            head += [f"{name} before refining (TV)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    start = time.perf_counter()
    for label, schedule in SCHEDULES.items():
        for steps in (40, 50):
            for k, means in MEANS.items():
                model = GaussianModel(means, 0.45, beta_schedule=schedule)
                timesteps, _, _ = ddim_coefficients(model, steps)
                single = min(exact_run_metrics(model, method=AttributeSwitching(tau), scheduler_name="ddim", steps=steps)["tv_exact"]
                             for tau in [-1] + timesteps)
                grid, grid_tv = exact_cyclic_grid_optimum(model, steps)
                solved = ", ".join(f"{p:.1f}" for p in exact_cyclic_points(model, steps))
                row = [label, str(steps), str(k), solved, f"{single:.3f}", str(list(grid)), f"{grid_tv:.4f}"]
                for name in searches:
                    result = CYCLIC_SEARCHES[name](model, scheduler_name="ddim", steps=steps, seed=0, batch_size=256,
                                                   cycle=tuple((a + 1) % k for a in range(k)))
                    points = ", ".join(f"{p:.2f}" if isinstance(p, float) else str(p) for p in result.points)
                    row += [f"[{points}]", f"{exact_cyclic_tv(model, steps, result.points):.4f}", str(result.nfe)]
                    if name in BETWEEN_STEPS_SEARCHES:
                        grid = tuple(result.details["grid"])
                        row += [f"{list(grid)} ({exact_cyclic_tv(model, steps, grid):.4f})"]
                print("| " + " | ".join(row) + " |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main("--sweep" in sys.argv[1:])
