"""Generated reports. `tau_search_report`: the tau searches against the exact optimum of the
analytic model, and (`model_tau_report`) against the measured epsilon(tau) curve of any model.

On the analytic Gaussian model the TV between the switched groups is known in closed form
at every tau, so each search's tau can be scored by the TV it leaves. On other models the
`sweep` search's curve (the leaderboard's epsilon estimator at every candidate tau, with its
interval) is the reference each search is scored against.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .models.gaussian import GaussianModel, exact_optimal_tau, exact_tv_curve
from .tau_search import TauSearchResult, direct_mean_search, direct_search, loop_output_to_samples, reference_search, run_search

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def tau_search_rows(*, steps_list=(50, 1000), stds=(0.5, 0.1), batch_size: int = 256, seed: int = 0) -> list[dict]:
    rows = []
    for (schedule, beta), steps, std in itertools.product(SCHEDULES.items(), steps_list, stds):
        model = GaussianModel([[-0.5, 0.0], [0.5, 0.0]], std, beta_schedule=beta)
        curve = dict(exact_tv_curve(model, steps))
        best, best_tv = exact_optimal_tau(model, steps)
        kwargs = dict(scheduler_name="ddim", steps=steps, seed=seed, batch_size=batch_size)
        ref, mean, direct = reference_search(model, **kwargs), direct_mean_search(model, **kwargs), direct_search(model, **kwargs)
        rows.append({
            "schedule": schedule, "steps": steps, "std": std,
            "tv_conditional": curve[-1], "tau_exact": best, "tv_exact": best_tv,
            "tau_reference": ref.tau, "tv_reference": curve[ref.tau], "nfe_reference": ref.nfe,
            "tau_direct_mean": mean.tau, "tv_direct_mean": curve[mean.tau], "nfe_direct_mean": mean.nfe,
            "tau_direct": direct.tau, "tv_direct": curve[direct.tau], "nfe_direct": direct.nfe,
            # a full sweep of the same batch from the shared prefix (tau_search.sweep_search)
            "nfe_sweep": 2 * batch_size * (steps + steps * (steps + 1) // 2),
        })
    return rows


def tau_search_report(**kwargs) -> str:
    rows = tau_search_rows(**kwargs)
    header = ("| schedule | DDIM steps | data std | TV conditional | exact optimal tau | TV at optimum "
              "| reference tau | TV at reference | direct_mean tau | TV at direct_mean | direct tau | TV at direct "
              "| NFE reference | NFE direct_mean | NFE direct | NFE sweep |")
    lines = [header, "|" + "---|" * 16]
    for r in rows:
        lines.append(
            f"| {r['schedule']} | {r['steps']} | {r['std']} | {r['tv_conditional']:.3f} | {r['tau_exact']} "
            f"| {r['tv_exact']:.4f} | {r['tau_reference']} | {r['tv_reference']:.4f} | {r['tau_direct_mean']} "
            f"| {r['tv_direct_mean']:.4f} | {r['tau_direct']} | {r['tv_direct']:.4f} | {r['nfe_reference']} "
            f"| {r['nfe_direct_mean']} | {r['nfe_direct']} | {r['nfe_sweep']} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Any model: the searches against the measured epsilon(tau) curve

# f(setup, samples, requested, final) -> the target-attribute gap of those samples
TargetGap = Callable[..., float]
COMPARED = ("reference", "direct_mean", "direct")


@dataclass(frozen=True)
class ModelTauReport:
    label: str
    settings: str  # sampler, steps, clip_sample, batch, seed
    sweep: TauSearchResult
    searches: dict[str, TauSearchResult]  # the compared searches, by name

    @property
    def epsilon(self) -> dict[int, float]:
        return dict(self.sweep.curve)

    @property
    def band(self) -> dict[int, tuple[float, float]]:
        return {tau: b for (tau, _), b in zip(self.sweep.curve, self.sweep.band)}


def model_tau_report(
    label: str,
    setup,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    clip_sample: bool,
    stride: int = 1,
    device="cpu",
    target_gap: TargetGap | None = None,
    searches: Sequence[str] = COMPARED,
) -> ModelTauReport:
    """The sweep of a run's `Setup`, and each compared search with its tau, NFE and seconds.

    `target_gap` (for example the metrics package's target-attribute gap), when given, is
    measured on the sweep's samples at every tau as ``target_gap(setup, samples, requested,
    final)``.
    """
    common = dict(scheduler_name=scheduler_name, steps=steps, seed=seed, batch_size=batch_size, device=device,
                  clip_sample=clip_sample)
    measures = {}
    if target_gap is not None:
        to_samples = loop_output_to_samples(setup)
        measures["target_gap"] = lambda out, requested, final: target_gap(setup, to_samples(out), requested, final)
    sweep = run_search("sweep", setup, stride=stride, measures=measures, **common)
    results = {kind: run_search(kind, setup, **common) for kind in searches}
    settings = f"{scheduler_name}, {steps} steps, clip_sample={clip_sample}, batch {batch_size} per group, seed {seed}"
    return ModelTauReport(label, settings, sweep, results)


def config_tau_report(config, *, label: str | None = None, seed: int = 0, batch_size: int = 256, stride: int = 1,
                      device="cpu", target_gap: TargetGap | None = None) -> ModelTauReport:
    """`model_tau_report` for the model, dataset and sampler of a benchmark config."""
    setup = config.model_spec().build(device=device, dataset=config.dataset)
    return model_tau_report(
        label or config.benchmark.name, setup, scheduler_name=config.sampler.scheduler, steps=config.sampler.steps,
        seed=seed, batch_size=batch_size, clip_sample=config.clip_sample(), stride=stride, device=device,
        target_gap=target_gap,
    )


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def model_tau_markdown(report: ModelTauReport) -> str:
    """One model's section: the sweep optimum, each search scored on the sweep, and the curve."""
    sweep, eps, band = report.sweep, report.epsilon, report.band
    best = sweep.tau
    low, high = band[best]
    lines = [
        f"### {report.label}", "", f"Settings: {report.settings}.", "",
        f"Sweep optimum: tau = {best}, epsilon = {eps[best]:.3f} [{low:.3f}, {high:.3f}] "
        f"({sweep.nfe} model evaluations, {sweep.wall_s:.1f} s).", "",
        "| search | tau | epsilon at tau (sweep) | within the optimum's interval | NFE | NFE / sweep NFE | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, result in report.searches.items():
        value = eps.get(result.tau)
        inside = "-" if value is None else ("yes" if value <= high else "no")
        lines.append(f"| {kind} | {result.tau} | {_number(value)} | {inside} | {result.nfe} "
                     f"| {result.nfe / sweep.nfe:.2f} | {result.wall_s:.1f} |")
    gaps = sweep.details.get("measures", {}).get("target_gap")
    lines += ["", "| tau | epsilon | interval |" + (" target gap |" if gaps else ""),
              "|---|---|---|" + ("---|" if gaps else "")]
    for j, (tau, value) in enumerate(sweep.curve):
        lo, hi = sweep.band[j]
        lines.append(f"| {tau} | {value:.3f} | [{lo:.3f}, {hi:.3f}] |" + (f" {gaps[j]:.3f} |" if gaps else ""))
    return "\n".join(lines) + "\n"
