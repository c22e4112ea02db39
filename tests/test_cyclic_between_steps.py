"""Cyclic switching at continuous points: the step that holds a point mixes two noise predictions.

Checked on the analytic Gaussian model through the method and the shared sampling loop: at the
solved points (`exact_cyclic_points`) every request gives the same output, the samples are the
closed form's, a continuous point on a visited timestep is the integer point bit for bit, and
the loop counts one extra model evaluation per sample at each step that holds a point.
"""

from __future__ import annotations

import json

import pytest
import torch

from fairbench.cli import main
from fairbench.errors import FairbenchError
from fairbench.methods import AttributeSwitching, CyclicSwitching, MethodContext, check_method, resolve_point
from fairbench.models.base import AttributeAxes, one_hot
from fairbench.models.gaussian import (
    GaussianModel, cyclic_mixtures, ddim_coefficients, exact_cyclic_points, exact_cyclic_tv, exact_run_metrics,
)
from fairbench.models.unconditional import gaussian_unconditional
from fairbench.noise import initial_noise
from fairbench.sampling import predict, sample

MEANS_3 = [[-0.5, -0.3], [0.5, -0.3], [0.0, 0.5]]
MEANS_4 = [[-0.5, -0.3], [0.5, -0.3], [0.4, 0.5], [-0.3, 0.6]]


class CountingModel:
    """A model that counts the rows it is evaluated on."""

    def __init__(self, model):
        self.model, self.rows = model, 0

    def eps(self, x, t, weights):
        self.rows += len(x)
        return self.model.eps(x, t, weights)

    def __getattr__(self, name):
        return getattr(self.model, name)


def straddled(timesteps: list[int], points) -> int:
    """Visited steps that hold a point strictly inside them (0 < f_i(tau) < 1)."""
    below = list(timesteps[1:]) + [-1]
    return sum(1 for t, b in zip(timesteps, below) if any(b < p < t for p in points))


@pytest.mark.parametrize(("schedule", "steps"), [("linear", 40), ("squaredcos_cap_v2", 25), ("scaled_linear", 50)])
@pytest.mark.parametrize("means", [MEANS_3, MEANS_4], ids=["k3", "k4"])
def test_the_method_at_the_solved_points_is_exactly_fair(schedule, means, steps):
    model, n, k = GaussianModel(means, 0.45, beta_schedule=schedule), 6, len(means)
    points = exact_cyclic_points(model, steps)
    assert all(isinstance(p, float) and p > 1 for p in points)
    method = CyclicSwitching(taus=tuple(points))
    timesteps, g, scale = ddim_coefficients(model, steps)
    noise = initial_noise(5, range(n), model.sample_shape, dtype=torch.float64)
    extra = straddled(timesteps, points)
    assert extra >= 1  # the solved points fall between visited steps
    outputs = []
    for a in range(k):
        counting = CountingModel(model)
        out = sample(counting, method, torch.full((n,), a), scheduler_name="ddim", steps=steps, seed=5, batch_size=n)
        # the closed form of the continuous relaxation (`cyclic_mixtures`): the same mean for every request
        mean = sum(gi * (w @ model.means) for gi, w in zip(g, cyclic_mixtures(timesteps, points, a, k)))
        torch.testing.assert_close(out.samples, scale * noise + mean, rtol=0, atol=1e-6)
        assert out.nfe == counting.rows == n * (steps + extra)  # one more evaluation per straddled step
        outputs.append(out.samples)
    for a in range(1, k):
        assert float((outputs[a] - outputs[0]).abs().max()) < 1e-6
    assert exact_cyclic_tv(model, steps, points) < 1e-6
    # the run's closed-form metric, read from the method's own schedule
    assert exact_run_metrics(model, method=method, scheduler_name="ddim", steps=steps)["tv_exact"] < 1e-6


@pytest.mark.parametrize("taus", [(450.0, 200.0), (950.0, 0.0 + 50.0), (450.0, 200)])
def test_a_continuous_point_on_a_visited_timestep_is_the_integer_point_bitwise(taus):
    model, n = GaussianModel(MEANS_3, 0.45), 9
    requested = torch.arange(n) % 3
    grid = tuple(int(p) for p in taus)
    assert all(p in range(950, -1, -50) for p in grid)  # DDIM 20 visits 950, 900, ..., 0
    for scheduler in ("ddim", "ddpm"):
        continuous = sample(model, CyclicSwitching(taus=taus), requested, scheduler_name=scheduler, steps=20, seed=4, batch_size=4)
        integer = sample(model, CyclicSwitching(taus=grid), requested, scheduler_name=scheduler, steps=20, seed=4, batch_size=4)
        assert torch.equal(continuous.samples, integer.samples) and torch.equal(continuous.final, integer.final)
        assert continuous.nfe == integer.nfe == n * 20


def test_two_values_at_a_continuous_point_on_the_grid_is_attribute_switching_bitwise():
    model, n = GaussianModel([[-0.5, 0.0], [0.5, 0.2]], 0.5), 8
    requested = torch.arange(n) % 2
    cyclic = sample(model, CyclicSwitching(taus=(300.0,)), requested, scheduler_name="ddim", steps=20, seed=1, batch_size=8)
    single = sample(model, AttributeSwitching(300), requested, scheduler_name="ddim", steps=20, seed=1, batch_size=8)
    assert torch.equal(cyclic.samples, single.samples) and cyclic.nfe == single.nfe == n * 20


def test_the_straddled_step_mixes_the_two_predictions():
    """At the step holding tau the prediction is (1 - f) eps(value j-1) + f eps(value j), f = f_i(tau)."""
    model, k = GaussianModel(MEANS_3, 0.45), 3
    timesteps = list(range(950, -1, -50))
    method = CyclicSwitching(taus=(430.0, 120)).visiting(timesteps)
    requested = torch.tensor([0, 1, 2])
    f = (430.0 - 400) / (450 - 400)
    weights = method.weights(450, requested, k)
    torch.testing.assert_close(weights, (1 - f) * one_hot(requested, k, torch.float64)
                               + f * one_hot((requested + 1) % k, k, torch.float64), rtol=0, atol=0)
    x = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    counting = CountingModel(model)
    eps, evaluations = predict(counting, x, 450, weights, mixes_predictions=True)
    wanted = (1 - f) * model.eps(x, 450, one_hot(requested, k)) + f * model.eps(x, 450, one_hot((requested + 1) % k, k))
    torch.testing.assert_close(eps, wanted, rtol=0, atol=1e-15)
    assert evaluations == counting.rows == 6
    # every other step is one-hot and one evaluation
    assert all(int((method.weights(t, requested, k) != 0).sum(1).max()) == 1 for t in timesteps if t != 450)
    assert method.conditional_prefix(timesteps) == timesteps.index(450)  # the straddled step is not conditional


def test_the_guided_unconditional_model_mixes_as_the_conditional_one():
    """With the exact posterior at scale 1 the guided unconditional model is the conditional one
    (Bayes' rule), so the mixture of its two predictions lands where the conditional model's does."""
    model, n, steps = GaussianModel(MEANS_3, 0.45), 6, 30
    points = exact_cyclic_points(model, steps)
    guided = gaussian_unconditional(model)
    method = CyclicSwitching(taus=tuple(points))
    extra = straddled(ddim_coefficients(model, steps)[0], points)
    for a in range(3):
        reference = sample(model, method, torch.full((n,), a), scheduler_name="ddim", steps=steps, seed=2, batch_size=n)
        out = sample(guided, method, torch.full((n,), a), scheduler_name="ddim", steps=steps, seed=2, batch_size=n)
        torch.testing.assert_close(out.samples, reference.samples, rtol=0, atol=1e-6)
        assert out.nfe == reference.nfe == n * (steps + extra)


def test_a_product_attribute_cycles_one_axis_between_steps():
    """A 2 x 3 product, the age axis cycled at the solved points: every age of one sex gives the same output."""
    axes = AttributeAxes(("sex", "age"), (("f", "m"), ("young", "mid", "old")))
    means = [[-0.5, -0.3], [0.5, -0.3], [0.0, 0.5], [-0.4, 0.8], [0.6, 0.9], [0.1, 1.6]]
    model, n, steps = GaussianModel(means, 0.45, attribute_axes=axes), 5, 40
    points = exact_cyclic_points(GaussianModel(MEANS_3, 0.45), steps)  # the points depend on the schedule only
    method = CyclicSwitching(taus=tuple(points), target=axes.switch_target(axes.axis("age")), switch_attribute="age")
    outputs = {}
    for value in range(6):
        counting = CountingModel(model)
        out = sample(counting, method, torch.full((n,), value), scheduler_name="ddim", steps=steps, seed=0, batch_size=n)
        outputs[value] = out.samples
        assert out.nfe == counting.rows == n * (steps + 2)
    for sex in (0, 1):
        ages = [outputs[3 * sex + age] for age in range(3)]
        assert float((ages[1] - ages[0]).abs().max()) < 1e-6 and float((ages[2] - ages[0]).abs().max()) < 1e-6
    assert float((outputs[3] - outputs[0]).abs().max()) > 0.1  # the sex is kept


def test_points_read_as_timesteps_fractions_or_continuous_points():
    assert resolve_point(287.6, 1000) == 287.6 and isinstance(resolve_point(287.6, 1000), float)
    assert resolve_point(0.5, 1000) == 500 and resolve_point(300, 1000) == 300
    for bad in (999.5, 1e9, float("inf")):
        with pytest.raises(FairbenchError, match="out of range"):
            resolve_point(bad, 1000)
    with pytest.raises(FairbenchError, match="fraction"):
        resolve_point(float("nan"), 1000)


def test_a_pipeline_sampler_refuses_points_between_steps():
    model = GaussianModel(MEANS_3, 0.45)
    context = MethodContext(model=model, own_sampler=True)
    params = CyclicSwitching.Params
    with pytest.raises(FairbenchError, match="between_steps = false"):
        check_method(CyclicSwitching, params(taus="direct"), context, "methods[0]")
    with pytest.raises(FairbenchError, match="integers"):
        check_method(CyclicSwitching, params(taus=[287.6, 130.5]), context, "methods[0]")
    check_method(CyclicSwitching, params(taus="direct", between_steps=False), context, "methods[0]")
    check_method(CyclicSwitching, params(taus=[287, 130]), context, "methods[0]")


def write_config(path, methods: str, steps: int) -> None:
    path.write_text(
        '[benchmark]\nname = "b"\nn_samples = 30\nbatch_size = 30\n'
        f'[model]\nkind = "gaussian"\nmeans = {MEANS_3}\nstd = 0.45\nn_real = 200\n'
        f'[sampler]\nscheduler = "ddim"\nsteps = {steps}\n'
        '[metrics]\nkid_subsets = 5\nkid_subset_size = 10\nbootstrap = 50\n' + methods
    )


def test_a_run_at_continuous_points_records_the_extra_evaluations(tmp_path):
    steps = 10
    points = [round(p, 3) for p in exact_cyclic_points(GaussianModel(MEANS_3, 0.45), steps)]
    path = tmp_path / "b.toml"
    write_config(path, f'[[methods]]\nname = "cyclic_switching"\ntaus = {points}\n', steps)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    (record_path,) = (tmp_path / "out" / "records").glob("*.json")
    metrics = json.loads(record_path.read_text())["metrics"]
    assert metrics["taus"] == points
    assert metrics["nfe_per_sample"] == steps + 2  # two straddled steps, one extra evaluation each
    assert metrics["tv_exact"] < 1e-3  # points rounded to 0.001 of a timestep


def test_between_steps_false_needs_a_search_that_refines(tmp_path, capsys):
    path = tmp_path / "b.toml"
    write_config(path, '[[methods]]\nname = "cyclic_switching"\ntaus = "reference"\nbetween_steps = false\n', 10)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error: ") and "between_steps" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_searched_run_refines_between_steps_unless_told_not_to(tmp_path):
    """The same search through the runner, with and without the refinement: the grid-only points are
    visited timesteps at one evaluation per step; the refined ones are closer to fair, at the cost recorded."""
    steps, path = 10, tmp_path / "b.toml"
    method = '[[methods]]\nname = "cyclic_switching"\ntaus = "direct"\nsearch_batch_size = 32\n'
    write_config(path, method + 'label = "grid"\nbetween_steps = false\n' + method + 'label = "refined"\n', steps)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    runs = {record["label"]: record["metrics"] for record in
            (json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json"))}
    timesteps, _, _ = ddim_coefficients(GaussianModel(MEANS_3, 0.45), steps)
    grid, refined = runs["grid"], runs["refined"]
    assert all(isinstance(p, int) and p in timesteps for p in grid["taus"]) and grid["nfe_per_sample"] == steps
    extra = straddled(timesteps, refined["taus"])
    assert extra >= 1 and refined["nfe_per_sample"] == steps + extra
    assert refined["tv_exact"] < grid["tv_exact"]
    assert refined["tau_search_nfe"] > grid["tau_search_nfe"]
