"""Tau searches: shared-prefix branching, the sweep and the direct search against exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fairbench.errors import FairbenchError
from fairbench.methods import AttributeSwitching
from fairbench.models.base import Setup
from fairbench.models.gaussian import GaussianModel, exact_optimal_tau, exact_tv_curve
from fairbench.models.unet import UNetDenoiser
from fairbench.sampling import Step, denoise, sample
from fairbench.noise import StepNoise, initial_noise
from fairbench.tau_search import (
    SEARCHES,
    SwitchedPair,
    bracket_minimum,
    direct_search,
    run_search,
    search_tau,
    sweep_search,
    unbiased_mmd2,
)
from test_unet import SCHEDULE, tiny_unet


def gaussian(std: float, schedule: str = "linear") -> GaussianModel:
    return GaussianModel([[-0.5, 0.0], [0.5, 0.0]], std, beta_schedule=schedule)


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm", "dpm_solver"])
def test_a_branch_from_the_shared_prefix_equals_sampling_that_tau_from_the_noise(scheduler):
    model = gaussian(0.5)
    pair = SwitchedPair(model, scheduler_name=scheduler, steps=8, seed=4, batch_size=3, s0=0, s1=1,
                        device="cpu", clip_sample=False)
    pair.run_prefix(range(len(pair.candidates)))
    for position, tau in enumerate(pair.candidates):
        direct = sample(model, AttributeSwitching(tau, target=(1, 0)), pair.requested, scheduler_name=scheduler,
                        steps=8, seed=4, batch_size=6, indices=pair.indices).samples
        assert torch.equal(pair.switched(position), direct), tau


def test_sweep_costs_the_prefix_plus_one_branch_per_candidate():
    n, batch = 10, 8
    result = sweep_search(gaussian(0.5), scheduler_name="ddim", steps=n, seed=0, batch_size=batch)
    assert [t for t, _ in result.curve] == [-1] + list(range(0, 1000, 100))
    assert result.nfe == 2 * batch * (n + n * (n + 1) // 2)  # independent runs: 2 * batch * n * (n + 1)
    assert len(result.band) == len(result.curve)
    assert all(lo <= v <= hi for (_, v), (lo, hi) in zip(result.curve, result.band))


def test_sweep_stride_keeps_both_ends():
    result = sweep_search(gaussian(0.5), scheduler_name="ddim", steps=10, seed=0, batch_size=8, stride=4)
    assert [t for t, _ in result.curve] == [-1, 300, 700, 900]
    with pytest.raises(FairbenchError, match="stride"):
        sweep_search(gaussian(0.5), scheduler_name="ddim", steps=10, seed=0, batch_size=8, stride=0)


@pytest.mark.parametrize("std,schedule", [(0.1, "linear"), (0.1, "squaredcos_cap_v2"), (0.5, "linear")])
def test_sweep_finds_the_exact_optimum_on_the_analytic_model(std, schedule):
    model = gaussian(std, schedule)
    result = sweep_search(model, scheduler_name="ddim", steps=25, seed=0, batch_size=256)
    exact = dict(exact_tv_curve(model, 25))
    assert [t for t, _ in result.curve] == list(exact)
    assert result.tau == exact_optimal_tau(model, 25)[0]
    # The curve is the estimator's: at the pure ends it sees the conditional TV.
    assert result.curve[0][1] == pytest.approx(exact[-1], abs=0.1)


@pytest.mark.parametrize("std,schedule,steps", [
    (0.5, "linear", 50), (0.1, "linear", 50), (0.5, "squaredcos_cap_v2", 50), (0.1, "squaredcos_cap_v2", 50),
    (0.5, "linear", 200),
])
def test_direct_search_lands_within_one_visited_step_of_the_exact_optimum(std, schedule, steps):
    model = gaussian(std, schedule)
    result = direct_search(model, scheduler_name="ddim", steps=steps, seed=0, batch_size=64)
    taus = [tau for tau, _ in exact_tv_curve(model, steps)]
    best = exact_optimal_tau(model, steps)[0]
    assert abs(taus.index(result.tau) - taus.index(best)) <= 1
    # The cost of a full sweep at the same batch, from the same formula the sweep test checks.
    assert result.nfe <= 2 * 64 * (steps + steps * (steps + 1) // 2) / 3


def test_direct_search_with_the_classifier_statistic():
    model = gaussian(0.1)
    result = direct_search(model, scheduler_name="ddim", steps=50, seed=0, batch_size=128, statistic="classifier")
    taus = [tau for tau, _ in exact_tv_curve(model, 50)]
    assert abs(taus.index(result.tau) - taus.index(exact_optimal_tau(model, 50)[0])) <= 1
    with pytest.raises(FairbenchError, match="Did you mean: mmd"):
        direct_search(model, scheduler_name="ddim", steps=5, seed=0, batch_size=8, statistic="mmdd")


CURVES = {
    # a local minimum at 10 and the global one at 70
    "two basins": lambda p: min((p - 10) ** 2 / 50 + 1.0, (p - 70) ** 2 / 200),
    # flat bottom from 40 to 60: the first lowest point is 40
    "flat bottom": lambda p: max(0.0, abs(p - 50) - 10) / 10,
    # two dips of cos (near 25 and 75); the slope toward 83 makes the one near 75 the lower
    "bump": lambda p: math.cos(p / 8) + 0.02 * abs(p - 83),
    # minimum at the right end
    "right end": lambda p: -p,
}


@pytest.mark.parametrize("name", list(CURVES))
def test_bracket_minimum_finds_the_minimum_of_a_known_non_monotone_curve(name):
    curve, count = CURVES[name], 101
    best, values = bracket_minimum(curve, count, coarse=9)
    exhaustive = min(range(count), key=curve)
    assert best == exhaustive
    assert all(values[p] == curve(p) for p in values)
    assert len(values) <= 9 + 2 * math.ceil(math.log2(count / 8)) + 2


def test_the_patient_scan_finds_the_same_minimum_of_a_unimodal_curve_for_less():
    rng = np.random.default_rng(2)
    for _ in range(200):
        centre, left, right = rng.uniform(0, 100), rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0)
        curve = lambda p: (left if p < centre else right) * abs(p - centre) + 1e-9 * p  # noqa: E731
        full, seen_full = bracket_minimum(curve, 101, coarse=9)
        patient, seen = bracket_minimum(curve, 101, coarse=9, patience=2)
        assert patient == full == min(range(101), key=curve)
        assert set(seen) <= set(seen_full) or len(seen) <= len(seen_full)
        # the grid points past the stop (two rises after the minimum's grid point) are not evaluated
        grid = sorted({round(j * 100 / 8) for j in range(9)})
        lowest = min(grid, key=curve)
        assert not [g for g in grid if g > lowest and grid.index(g) > grid.index(lowest) + 2 and g in seen]


def test_the_patient_scan_misses_a_lower_basin_past_two_rises():
    # what patience cannot see: a lower plateau from 80 on, past two rises after the basin at 10
    def curve(p):
        return abs(p - 10) if p < 80 else -1.0

    assert bracket_minimum(curve, 101, coarse=9, patience=2)[0] == 10
    assert bracket_minimum(curve, 101, coarse=9)[0] == 80


def test_direct_search_stopping_early_chooses_the_full_grid_tau_for_fewer_evaluations():
    # std 0.1: past its minimum the curve overshoots the tau = -1 level and comes back down, so
    # the scan finds no two rises and evaluates the whole grid; 0.3 and 0.5 rise steadily.
    for std, saves in ((0.1, False), (0.3, True), (0.5, True)):
        model = gaussian(std)
        kwargs = dict(scheduler_name="ddim", steps=50, seed=0, batch_size=64)
        patient, full = direct_search(model, **kwargs), direct_search(model, patience=None, **kwargs)
        assert patient.tau == full.tau
        assert (patient.nfe < 0.7 * full.nfe) == saves
        assert set(patient.curve) <= set(full.curve)


def test_bracket_minimum_on_random_smooth_curves_matches_exhaustive_search():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, phase, centre = rng.uniform(0.2, 1.0), rng.uniform(0, 2 * np.pi), rng.uniform(0, 50)
        curve = lambda p: a * np.sin(p / 5.0 + phase) + 0.02 * abs(p - centre) + 1e-9 * p  # noqa: E731
        best, _ = bracket_minimum(curve, 51, coarse=11)
        assert best == min(range(51), key=curve)


def test_unbiased_mmd_matches_its_formula_and_ranks_planted_differences():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(15, 3)), rng.normal(size=(12, 3)) + 0.3
    pooled = np.concatenate([x, y])
    d2 = [np.sum((a - b) ** 2) for i, a in enumerate(pooled) for j, b in enumerate(pooled) if i != j]
    h2 = np.median(d2)
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * h2))  # noqa: E731
    expected = (sum(k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / (15 * 14)
                + sum(k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / (12 * 11)
                - 2 * sum(k(a, b) for a in x for b in y) / (15 * 12))
    assert unbiased_mmd2(x, y) == pytest.approx(expected, rel=1e-10)
    same = np.mean([unbiased_mmd2(rng.normal(size=(50, 2)), rng.normal(size=(50, 2))) for _ in range(40)])
    shifted = unbiased_mmd2(rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + 1.0)
    spread = unbiased_mmd2(rng.normal(size=(50, 2)), 3.0 * rng.normal(size=(50, 2)))
    assert abs(same) < 0.01 and shifted > 0.1 and spread > 0.1


def test_reference_search_reads_eps_through_the_step_callback():
    model, batch, steps = gaussian(0.5), 4, 6
    seen = []
    noise = initial_noise(0, range(batch), (2,), dtype=torch.float64)
    denoise(model, AttributeSwitching(-1), noise, torch.zeros(batch, dtype=torch.long), scheduler_name="ddim",
            steps=steps, step_noise=StepNoise(0, list(range(batch))), on_step=seen.append)
    assert [s.index for s in seen] == list(range(steps)) and all(isinstance(s, Step) for s in seen)
    first = seen[0]
    torch.testing.assert_close(first.eps, model.eps(first.x, first.t, torch.eye(2, dtype=torch.float64)[[0] * batch]))
    assert all(torch.equal(a.prev_sample, b.x) for a, b in zip(seen, seen[1:]))
    result = search_tau("reference", model, scheduler_name="ddim", steps=steps, seed=0, batch_size=batch)
    assert result.nfe == 2 * batch * steps


def test_one_registry_with_a_suggestion():
    assert set(SEARCHES) == {"reference", "direct", "direct_mean", "sweep"}
    with pytest.raises(FairbenchError, match="Unknown tau search 'swep'. Did you mean: sweep?"):
        search_tau("swep", gaussian(0.5), scheduler_name="ddim", steps=5, seed=0, batch_size=4)


def test_methods_accept_exactly_the_registered_searches():
    from fairbench.config import parse_method

    for name in SEARCHES:
        assert parse_method({"name": "attribute_switching", "tau": name}, "methods[0]").params["tau"] == name
    with pytest.raises(FairbenchError, match=r"methods\[0\]\.tau = 'dirct' is not a search\. Did you mean: direct\?"):
        parse_method({"name": "attribute_switching", "tau": "dirct"}, "methods[0]")


# ---------------------------------------------------------------------------------------------
# Each search through `run_search` on an image setup measures the features it is defined on


class Recorder:
    """A feature function that keeps what it was given and what it returned."""

    def __init__(self, function):
        self.function, self.inputs, self.outputs = function, [], []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.function(x)
        self.inputs.append(x.detach().clone())
        self.outputs.append(out.detach().clone())
        return out


def test_every_search_through_run_search_measures_its_features_on_a_unet_with_a_judge():
    model = UNetDenoiser(tiny_unet(), SCHEDULE, ("light", "heavy"))
    weights = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    judge = lambda x: torch.log_softmax(x.reshape(len(x), -1) @ weights.to(x), dim=1)  # noqa: E731
    batch = 16
    common = dict(scheduler_name="ddim", steps=6, seed=0, batch_size=batch, clip_sample=True)
    for search in SEARCHES:
        features = Recorder(lambda x: x.reshape(len(x), -1)[:, ::4])
        balance = Recorder(lambda x: judge(x).exp())
        setup = Setup(model=model, features=features, judge=judge, balance_features=balance)
        result = run_search(search, setup, **common, **({"stride": 3} if search == "sweep" else {}))
        measured = {"reference": (), "direct": (features,), "sweep": (features,), "direct_mean": (balance,)}[search]
        for recorder in (features, balance):
            assert bool(recorder.inputs) == (recorder in measured), (search, recorder is balance)
            for x in recorder.inputs:  # the loop's output is the samples themselves
                assert x.shape == (2 * batch, *model.sample_shape)
        if search == "direct_mean":
            # the curve is the balance of the judge's probabilities: gap = <m, d> / <d, d>, d = m at tau = -1
            means = [p[:batch].double().mean(0) - p[batch:].double().mean(0) for p in balance.outputs]
            gaps = [float(m @ means[0] / (means[0] @ means[0])) for m in means]
            assert sorted(v for _, v in result.curve) == pytest.approx(sorted(gaps))
            assert balance.outputs[0].shape == (2 * batch, 2)
