"""Sequential sample sizes: the look schedule, the union-bound level, the stopping rule, and a
sequential job's samples and epsilon against the fixed-size run they extend."""

from __future__ import annotations

import copy
import dataclasses
from statistics import NormalDist

import numpy as np
import pytest
import torch

from fairbench.config import parse_config
from fairbench.metrics.suite import estimate_epsilon
from fairbench.runner import requested_values, run_benchmark
from fairbench.sequential import SequentialSamples, run_looks
from fairbench.shards import ShardedSamples


@pytest.mark.parametrize(("spec", "looks"), [
    (SequentialSamples(0.03, 8000), (1000, 2000, 4000, 8000)),
    (SequentialSamples(0.03, 5000), (1000, 2000, 4000, 5000)),
    (SequentialSamples(0.03, 1000), (1000,)),
    (SequentialSamples(0.03, 1000, start=300, growth=1.5), (300, 450, 675, 1000)),
])
def test_looks_grow_geometrically_to_max(spec, looks):
    assert spec.looks == looks
    assert spec.look_confidence(0.95) == pytest.approx(1 - 0.05 / len(looks))


def test_run_looks_stops_at_the_first_narrow_interval():
    spec = SequentialSamples(0.05, 8000)
    widths = {1000: 0.09, 2000: 0.06, 4000: 0.045, 8000: 0.03}
    taken = run_looks(spec, lambda n: (0.5, (0.5 - widths[n], 0.5 + widths[n])))
    assert [look.n for look in taken] == [1000, 2000, 4000]
    never = run_looks(SequentialSamples(0.01, 8000), lambda n: (0.5, (0.5 - widths[n], 0.5 + widths[n])))
    assert [look.n for look in never] == [1000, 2000, 4000, 8000]


def _looks_cover(spec: SequentialSamples, level: float, reps: int, rng) -> tuple[float, float]:
    """Running means of N(0, 1) observed at the looks, z-intervals at `level`: the share of
    repetitions in which every look covers 0, and in which the half-width-stopped look does."""
    n = np.array(spec.looks)
    z = NormalDist().inv_cdf((1 + level) / 2)
    draws = rng.standard_normal((reps, spec.max), dtype=np.float32)
    means = np.cumsum(draws, axis=1)[:, n - 1] / n
    covered = np.abs(means) <= z / np.sqrt(n)
    return covered.all(axis=1).mean(), covered[:, -1].mean()


def test_union_bound_over_looks_keeps_simultaneous_coverage():
    """The construction itself, on running means where every look's interval is exact: at the
    per-look level all looks cover at once in >= 95% of repetitions; at the nominal level
    they do not (the reason for the adjustment)."""
    spec = SequentialSamples(0.03, 8000, start=500)  # 5 looks
    rng = np.random.default_rng(0)
    adjusted, _ = _looks_cover(spec, spec.look_confidence(0.95), 20000, rng)
    nominal, last = _looks_cover(spec, 0.95, 20000, rng)
    assert adjusted >= 0.95 - 0.005  # binomial sd at 20000 reps: 0.0015
    assert nominal < 0.93 and last == pytest.approx(0.95, abs=0.01)


CONFIG = {
    "benchmark": {"name": "gaussian-sequential", "n_samples": {"half_width": 0.06, "max": 480, "start": 120},
                  "seeds": [0], "batch_size": 100, "shard_size": 100},
    "model": {"kind": "gaussian", "means": [[-0.5, 0.0], [0.5, 0.0]], "std": 0.5},
    "sampler": {"scheduler": "ddim", "steps": 8},
    "methods": [{"name": "conditional"}, {"name": "embedding_mixing", "weight": 0.5}],
    "metrics": {"bootstrap": 50, "epsilon_permutations": 0},
}


def _run(data, out):
    records = run_benchmark(parse_config(data, source="test"), out, device="cpu", log=lambda message: None)
    return {r["label"]: r for r in records}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    sequential = tmp_path_factory.mktemp("sequential")
    fixed_data = copy.deepcopy(CONFIG)
    fixed_data["benchmark"]["n_samples"] = 480
    fixed = tmp_path_factory.mktemp("fixed")
    return (sequential, _run(CONFIG, sequential)), (fixed, _run(fixed_data, fixed))


def test_each_method_stops_at_its_own_look(runs):
    (_, records), _ = runs
    spec = SequentialSamples(0.06, 480, start=120)
    mixed, conditional = records["embedding_mixing(weight=0.5)"]["metrics"], records["conditional"]["metrics"]
    for metrics in (mixed, conditional):
        looks = metrics["looks"]
        assert [look["n"] for look in looks] == list(spec.looks[: len(looks)])
        assert metrics["n_used"] == looks[-1]["n"]
        assert all(look["half_width"] > 0.06 for look in looks[:-1])
        assert looks[-1]["half_width"] <= 0.06 or metrics["n_used"] == 480
        assert metrics["look_confidence"] == pytest.approx(1 - 0.05 / 3)
        assert metrics["epsilon_ci"] == pytest.approx(looks[-1]["interval"])
    # the fair method's interval hugs 0 and is narrow early; the unfair one needs more samples
    assert mixed["n_used"] < conditional["n_used"]


def test_sequential_samples_extend_the_fixed_run(runs):
    """A job stopped at n holds the first n samples of the fixed-size run, shards completed
    where a look fell inside one, and its epsilon is the estimate on them at the per-look level."""
    (seq_dir, seq), (fixed_dir, fixed) = runs
    for label, record in seq.items():
        n = record["metrics"]["n_used"]
        ours = ShardedSamples.from_folder(seq_dir / "shards" / record["job_key"][:16])
        theirs = ShardedSamples.from_folder(fixed_dir / "shards" / fixed[label]["job_key"][:16])
        assert len(ours) == n
        torch.testing.assert_close(ours[0:n], theirs[0:n], rtol=0, atol=0)
        options = dataclasses.replace(parse_config(CONFIG, source="test").metrics,
                                      confidence=record["metrics"]["look_confidence"])
        spaces = {"raw": ours[0:n].flatten(1).numpy()}  # the Gaussian model's features are its raw values
        estimate = estimate_epsilon(spaces, requested_values(n, 2).numpy(), options, seed=0)
        assert record["metrics"]["epsilon"] == pytest.approx(estimate.value)
        assert record["metrics"]["epsilon_ci"] == pytest.approx(list(estimate.interval))


def test_a_rerun_reuses_every_record(runs):
    (seq_dir, seq), _ = runs
    again = _run(CONFIG, seq_dir)
    for label, record in seq.items():
        assert again[label]["metrics"]["looks"] == record["metrics"]["looks"]
        assert again[label]["job_key"] == record["job_key"]


def test_the_leaderboard_says_how_the_jobs_stopped(runs):
    (seq_dir, seq), (fixed_dir, _) = runs
    line = next(line for line in (seq_dir / "leaderboard.md").read_text().splitlines() if line.startswith("Sequential"))
    assert "half_width 0.06" in line and f"{1 - 0.05 / 3:.4g}" in line
    for record in seq.values():
        assert str(record["metrics"]["n_used"]) in line
    assert "Sequential sample sizes" not in (fixed_dir / "leaderboard.md").read_text()


def test_the_sequential_digits_baseline_runs_on_the_shipped_networks():
    from pathlib import Path

    from fairbench.config import load_config

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "baselines" / "digits-sequential.toml")
    default = load_config(root / "fairbench" / "configs" / "digits.toml")
    assert config.benchmark.sequential.looks == (1000, 2000, 4000, 8000)
    assert config.benchmark.sequential.half_width == 0.03
    assert (config.model, config.dataset, config.sampler) == (default.model, default.dataset, default.sampler)
