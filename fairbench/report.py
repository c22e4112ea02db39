"""Generated reports. `tau_search_report`: both tau searches against the exact optimum.

On the analytic Gaussian model the TV between the switched groups is known in closed form
at every tau, so each search's tau can be scored by the TV it leaves.
"""

from __future__ import annotations

import itertools

from .models.gaussian import GaussianModel, exact_optimal_tau, exact_tv_curve
from .tau_search import direct_search, reference_search

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def tau_search_rows(*, steps_list=(50, 1000), stds=(0.5, 0.1), batch_size: int = 256, seed: int = 0) -> list[dict]:
    rows = []
    for (schedule, beta), steps, std in itertools.product(SCHEDULES.items(), steps_list, stds):
        model = GaussianModel([[-0.5, 0.0], [0.5, 0.0]], std, beta_schedule=beta)
        curve = dict(exact_tv_curve(model, steps))
        best, best_tv = exact_optimal_tau(model, steps)
        kwargs = dict(scheduler_name="ddim", steps=steps, seed=seed, batch_size=batch_size)
        ref, direct = reference_search(model, **kwargs), direct_search(model, **kwargs)
        rows.append({
            "schedule": schedule, "steps": steps, "std": std,
            "tv_conditional": curve[-1], "tau_exact": best, "tv_exact": best_tv,
            "tau_reference": ref.tau, "tv_reference": curve[ref.tau], "nfe_reference": ref.nfe,
            "tau_direct": direct.tau, "tv_direct": curve[direct.tau], "nfe_direct": direct.nfe,
        })
    return rows


def tau_search_report(**kwargs) -> str:
    rows = tau_search_rows(**kwargs)
    header = ("| schedule | DDIM steps | data std | TV conditional | exact optimal tau | TV at optimum "
              "| reference tau | TV at reference | direct tau | TV at direct | NFE reference | NFE direct |")
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['schedule']} | {r['steps']} | {r['std']} | {r['tv_conditional']:.3f} | {r['tau_exact']} "
            f"| {r['tv_exact']:.4f} | {r['tau_reference']} | {r['tv_reference']:.4f} | {r['tau_direct']} "
            f"| {r['tv_direct']:.4f} | {r['nfe_reference']} | {r['nfe_direct']} |"
        )
    return "\n".join(lines) + "\n"
