"""The contract every registered method meets; a method is covered here by being in `METHODS`.

Each method is run with its class's ``example`` parameters on the analytic Gaussian model:
its config round-trips, bad parameters are refused with one line, the same noise gives the
same samples on any batch split, and the counted model evaluations are the real ones.
"""

import dataclasses
from typing import ClassVar

import pytest
import torch

from fairbench.cli import main
from fairbench.config import parse_config, parse_method
from fairbench.errors import FairbenchError
from fairbench.methods import METHODS, Method, MethodContext, RandomCondition, assigned
from fairbench.models.base import CAPABILITIES, one_hot
from fairbench.models import model_spec
from fairbench.runner import Job, run_cell
from fairbench.sampling import sample

NAMES = sorted(METHODS)
STEPS = 4


def config_table(name: str, **params) -> dict:
    return {
        "benchmark": {"name": "contract", "n_samples": 40, "seeds": [0], "batch_size": 16, "shard_size": 24},
        "model": {"kind": "gaussian", "means": [[-0.5, 0.0], [0.5, 0.0]], "std": 0.5, "n_real": 200},
        "sampler": {"scheduler": "ddim", "steps": STEPS},
        "metrics": {"kid_subsets": 5, "kid_subset_size": 20, "bootstrap": 50},
        "methods": [{"name": name, **(METHODS[name].example | params)}],
    }


class CountingModel:
    """The run's model, counting the rows it is evaluated on."""

    def __init__(self, model):
        self.model, self.rows = model, 0

    def eps(self, x, t, weights):
        self.rows += len(x)
        return self.model.eps(x, t, weights)

    def __getattr__(self, name):
        return getattr(self.model, name)


@pytest.fixture(scope="module")
def setup():
    return model_spec(config_table("conditional")["model"]).build(device="cpu")


def built(name: str, setup, model=None):
    spec = parse_config(config_table(name)).methods[0]
    context = MethodContext(model=model or setup.model, guidance=setup.guidance, search_tau=lambda kind, size: 500)
    return spec.method_class.build(spec.options(), context)


def run(method, model, *, seed=0, batch_size=8, n=8):
    requested = torch.arange(n) % model.num_attributes
    conditions = assigned(method, requested, model.num_attributes, seed=seed, indices=range(n))
    return sample(model, method, conditions, scheduler_name="ddim", steps=STEPS, seed=seed, batch_size=batch_size)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips(name):
    spec = parse_config(config_table(name, label="mine")).methods[0]
    assert spec.name == name and spec.label == "mine" and spec.display == "mine"
    again = parse_method(spec.table(), "methods[0]")
    assert again == spec and again.record() == spec.record()
    assert spec.record()["name"] == name
    assert METHODS[name].name == name  # the registry key is the name records and labels carry


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_needs_are_declared_once(name, setup):
    cls = METHODS[name]
    keys = [f.name for f in dataclasses.fields(cls.Params)]
    assert issubclass(cls, cls.Params) or not keys  # the method's first fields are its parameter list
    assert [f.name for f in dataclasses.fields(cls)][: len(keys)] == keys
    assert list(built(name, setup).params()) == keys
    for capability, parameter in cls.requires.items():
        assert capability in CAPABILITIES and (parameter is None or parameter in keys), (capability, parameter)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_is_refused_on_one_line(tmp_path, capsys, name):
    table = config_table(name)
    table["methods"][0]["not_a_parameter"] = 1
    with pytest.raises(FairbenchError, match="not_a_parameter"):
        parse_config(table)
    path = tmp_path / "bad.toml"
    params = "".join(f"{k} = {v!r}\n" for k, v in METHODS[name].example.items())
    path.write_text(
        '[benchmark]\nname = "b"\nn_samples = 20\n[model]\nkind = "gaussian"\nmeans = [[0.0], [1.0]]\n'
        f'[[methods]]\nname = "{name}"\n{params}not_a_parameter = 1\n'
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error: ") and "not_a_parameter" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", NAMES)
def test_each_parameter_refuses_a_value_of_the_wrong_type(name):
    for f in dataclasses.fields(METHODS[name].Params):
        table = config_table(name)
        table["methods"][0][f.name] = {"not": "a value"}
        with pytest.raises(FairbenchError, match=f.name):
            parse_config(table)


@pytest.mark.parametrize("name", NAMES)
def test_same_noise_gives_the_same_samples_on_any_batch_split(name, setup):
    method = built(name, setup)
    whole = run(method, setup.model, batch_size=8)
    if method.batch_dependent:  # by design (its docstring): the same batches give the same samples, other splits not
        assert torch.equal(whole.samples, run(method, setup.model, batch_size=8).samples)
        assert not torch.equal(whole.samples, run(method, setup.model, batch_size=3).samples)
        assert not torch.equal(whole.samples, run(method, setup.model, seed=1).samples)
        return
    assert torch.equal(whole.samples, run(method, setup.model, batch_size=3).samples)
    assert torch.equal(whole.final, run(method, setup.model, batch_size=3).final)
    assert not torch.equal(whole.samples, run(method, setup.model, seed=1).samples)


@pytest.mark.parametrize("name", NAMES)
def test_nfe_counts_the_model_evaluations(name, setup):
    counting = CountingModel(setup.model)
    method = built(name, setup, counting)
    out = run(method, counting, batch_size=3)
    assert out.nfe == counting.rows > 0
    # A correction is a classifier's (counted per sample and step) unless it calls the model,
    # whose extra evaluations the counting model has seen and the NFE above includes.
    classified = method.correct is not None and not method.correction_nfe
    assert out.classifier_evals == (counting.rows if classified else 0)
    assert counting.rows == 8 * STEPS * (1 + method.correction_nfe)


@pytest.mark.parametrize("name", NAMES)
def test_runs_through_the_runner_and_records_its_spec(name, setup, tmp_path):
    config = parse_config(config_table(name))
    counting = CountingModel(setup.model)
    job = Job(config, 0, seed=0)
    record = run_cell(job, dataclasses.replace(setup, model=counting), tmp_path, device="cpu")
    assert record["spec"]["method"] == config.methods[0].record()
    assert record["label"] == config.methods[0].display
    assert record["metrics"]["nfe_per_sample"] * config.benchmark.n_samples == counting.rows


def test_random_condition_ignores_the_request_and_draws_each_value_equally_often():
    method, k = RandomCondition(), 3
    n = 3000
    zeros, twos = torch.zeros(n, dtype=torch.long), torch.full((n,), 2)
    draws = assigned(method, zeros, k, seed=7, indices=range(n))
    assert torch.equal(draws, assigned(method, twos, k, seed=7, indices=range(n)))
    assert torch.equal(draws[[5, 17]], assigned(method, zeros[:2], k, seed=7, indices=[5, 17]))
    assert not torch.equal(draws, assigned(method, zeros, k, seed=8, indices=range(n)))
    counts = torch.bincount(draws, minlength=k).double()
    # Binomial(3000, 1/3): sd 25.8; 5 sd either side is a false alarm once in ~3.5 million.
    assert ((counts - n / k).abs() < 5 * (n * (1 / k) * (2 / k)) ** 0.5).all(), counts


def test_random_condition_is_fair_where_conditional_is_not(setup, tmp_path):
    # Planted controls on separated Gaussians: conditional sampling is told apart by request
    # almost perfectly, random conditions not at all (the same law for every request).
    records = {}
    for name in ("conditional", "random_condition"):
        table = config_table(name)
        table["benchmark"]["n_samples"] = 400
        table["model"]["std"] = 0.2
        config = parse_config(table)
        spec_setup = config.model_spec().build(device="cpu")
        records[name] = run_cell(Job(config, 0, seed=0), spec_setup, tmp_path / name, device="cpu")["metrics"]
    assert records["conditional"]["epsilon"] > 0.9
    # Identical laws: only the estimator's noise remains (about 0.1 at 200 samples per group).
    assert records["random_condition"]["epsilon"] < 0.25
    assert "tv_exact" in records["conditional"] and "tv_exact" not in records["random_condition"]


@dataclasses.dataclass(frozen=True)
class _FixedParams:
    value: int = 0

    def validate(self, where: str) -> None:
        if self.value < 0:
            raise FairbenchError(f"{where}.value must be non-negative, got {self.value}")


@dataclasses.dataclass(frozen=True)
class _Fixed(Method):
    """Every sample conditioned on one value: defined here and registered, nothing else."""

    value: int = 0
    name: ClassVar[str] = "fixed_value"
    Params: ClassVar[type] = _FixedParams
    sweepable: ClassVar[tuple[str, ...]] = ("value",)

    def weights(self, t, requested, k):
        return one_hot(torch.full_like(requested, self.value), k)


def test_a_method_that_is_only_registered_parses_sweeps_refuses_and_runs(monkeypatch, setup, tmp_path):
    monkeypatch.setitem(METHODS, "fixed_value", _Fixed)
    table = config_table("fixed_value", value=[0, 1])
    config = parse_config(table)
    assert [m.display for m in config.methods] == ["fixed_value(value=0)", "fixed_value(value=1)"]
    with pytest.raises(FairbenchError, match=r"methods\[0\]\.value must be non-negative, got -1"):
        parse_config(config_table("fixed_value", value=-1))
    with pytest.raises(FairbenchError, match="scale does not apply to method 'fixed_value'"):
        parse_config(config_table("fixed_value", scale=1.0))
    record = run_cell(Job(config, 1, seed=0), setup, tmp_path, device="cpu")
    assert record["spec"]["method"] == {"name": "fixed_value", "value": 1}
    assert record["metrics"]["tv_exact"] == 0.0  # every request conditioned on the same value
