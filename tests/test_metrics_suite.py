"""The measurement suite end to end: evaluate(), the runner's records, leaderboard columns,
peak memory and the generated metrics table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import accuracy_score
from sklearn.neighbors import KNeighborsClassifier

from fairbench.config import parse_config
from fairbench.errors import FairbenchError
from fairbench.leaderboard import leaderboard_frame, markdown_table
from fairbench.methods import Conditional
from fairbench.metrics import METRICS
from fairbench.metrics.docs import metrics_markdown
from fairbench.metrics.quality import FeatureStats, frechet_distance
from fairbench.metrics.suite import SuiteOptions, evaluate
from fairbench.models import GaussianSpec, RealData
from fairbench.runner import Job, run_cell
from fairbench.sampling import sample

REPO = Path(__file__).resolve().parents[1]
N = 400


@pytest.fixture(scope="module")
def setup():
    return GaussianSpec(kind="gaussian", means=[[-0.5, 0.0], [0.5, 0.0]], std=0.5, n_real=2000).build()


@pytest.fixture(scope="module")
def generated(setup):
    requested = torch.arange(N) % 2
    return requested, sample(setup.model, Conditional(), requested, scheduler_name="ddim", steps=10, seed=0, batch_size=N)


def _judge() -> torch.nn.Module:
    """A tiny judge: log-softmax of a linear map that reads the sign of the first coordinate."""
    linear = torch.nn.Linear(2, 2, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]))
        linear.bias.zero_()
    return torch.nn.Sequential(linear, torch.nn.LogSoftmax(dim=1))


def _known(keys) -> set:
    return set(keys) - set(METRICS) - {m.interval for m in METRICS.values() if m.interval}


def test_gaussian_setup_carries_real_data_and_evaluate_gives_raw_fid(setup, generated):
    requested, out = generated
    real = setup.real
    assert real.samples.shape == (2000, 2) and torch.equal(real.sensitive, torch.arange(2000) % 2)
    metrics = evaluate(out.samples, requested, setup, seed=0, config=SuiteOptions(kid_subsets=5))
    assert metrics["fid_features"] == "raw"
    assert set(metrics["fid_by_group"]) == set(metrics["kid_by_group"]) == {"s0", "s1"}
    assert metrics["quality_groups"]["s1"]["real"] == "real images of 's1'"
    assert metrics["quality_groups"]["s1"]["n_real"] == 1000 and metrics["quality_groups"]["s1"]["n_generated"] == N // 2
    assert "utility_accuracy" not in metrics and "target_gap" not in metrics  # no target
    # The Bayes judge errs where the values overlap: per class Phi(|mu_1 - mu_0| / (2 std)) = Phi(1).
    for accuracy in metrics["judge_accuracy_by_class"].values():
        assert accuracy == pytest.approx(0.8413, abs=0.03)
    # Conditional sampling with the exact denoiser: each group holds one value, which the judge
    # reads as roughly 0.84 / 0.16 (10 DDIM steps change the spread a little), and the
    # correction for the judge's measured error puts it back near 1 / 0.
    assert 0.4 < metrics["fd"] < metrics["fd_corrected"] - 0.1
    assert metrics["fd_corrected"] == pytest.approx(np.sqrt(0.5), abs=0.06)
    assert _known(metrics) == set()
    # FID recomputed from the raw samples and the real draws.
    expected = frechet_distance(FeatureStats.of(out.samples.numpy()), FeatureStats.of(real.samples.numpy()))
    assert metrics["fid"] == pytest.approx(expected, rel=1e-12)
    # Conditional sampling with the exact denoiser reproduces the data law: FID near 0, and each
    # group near 0 against the real images of its own value.
    assert metrics["fid"] < 0.1 and max(metrics["fid_by_group"].values()) < 0.1
    # Told that every sample carries the other value, each group is far from its reference.
    swapped = evaluate(out.samples, requested, setup, seed=0, final=1 - requested, config=SuiteOptions(kid_subsets=5))
    assert min(swapped["fid_by_group"].values()) > 10 * max(metrics["fid_by_group"].values()) + 0.5
    assert min(swapped["kid_by_group"].values()) > 10 * max(metrics["kid_by_group"].values())


def test_evaluate_with_a_judge_and_labels_matches_direct_computations(setup, generated):
    requested, out = generated
    judge = _judge()
    real = setup.real
    with_judges = dataclasses.replace(
        setup, judge=judge, target_judge=judge,
        real=RealData(samples=real.samples, sensitive=real.sensitive, target=real.sensitive),
    )
    metrics = evaluate(out.samples, requested, with_judges, seed=0, config=SuiteOptions(kid_subsets=5))
    labels = (out.samples[:, 0] > 0).long().numpy()
    p = np.bincount(labels, minlength=2) / N
    groups = [np.bincount(labels[requested.numpy() == a], minlength=2) / (N / 2) for a in (0, 1)]
    assert metrics["fd_pooled"] == pytest.approx(np.linalg.norm(p - 0.5), abs=1e-12)
    assert metrics["fd"] == pytest.approx(max(np.linalg.norm(g - 0.5) for g in groups), abs=1e-12)
    assert metrics["judged_distribution"]["s0"] == pytest.approx(list(groups[0]))
    # The judge's error, measured on the real draws, and the corrected proportions.
    real_labels = (real.samples[:, 0] > 0).long().numpy()
    accuracy = [np.mean(real_labels[real.sensitive.numpy() == a] == a) for a in (0, 1)]
    assert metrics["judge_accuracy_by_class"] == pytest.approx({"s0": accuracy[0], "s1": accuracy[1]}, abs=1e-12)
    q1 = (groups[0][1] - (1 - accuracy[0])) / (accuracy[0] + accuracy[1] - 1)  # CLEAM's binary point estimate
    assert metrics["judged_distribution_corrected"]["s0"][1] == pytest.approx(min(max(q1, 0.0), 1.0), abs=1e-9)
    # Bias inheritance with the judge as target judge: the target is the sensitive value itself.
    assert metrics["target_gap"] == pytest.approx(abs(groups[0][1] - groups[1][1]), abs=1e-12)
    low, high = metrics["target_gap_ci"]
    assert low <= metrics["target_gap"] <= high
    assert metrics["target_gap_heldout"] == pytest.approx(1.0)  # real target == real sensitive value
    # Utility: a 5-nearest-neighbour vote over the judge-labelled samples, tested on the real draws.
    pred = KNeighborsClassifier(5).fit(out.samples.numpy(), labels).predict(real.samples.numpy())
    y, s = real.sensitive.numpy(), real.sensitive.numpy()
    assert metrics["utility_accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    by_group = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=s).by_group
    assert metrics["utility_accuracy_by_group"] == pytest.approx({"s0": by_group[0], "s1": by_group[1]}, abs=1e-12)
    assert metrics["utility_dp_difference"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=s), abs=1e-12)
    assert metrics["utility_eo_difference"] == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=s), abs=1e-12)
    assert _known(metrics) == set()
    # utility_target = "sensitive": labels are the samples' final condition instead of a judge.
    by_condition = evaluate(out.samples, requested, setup, seed=0, final=out.final,
                            config=SuiteOptions(kid_subsets=5, utility_target="sensitive"))
    pred = KNeighborsClassifier(5).fit(out.samples.numpy(), out.final.numpy()).predict(real.samples.numpy())
    assert by_condition["utility_accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    # The reference: the same vote over the real training draws (a second draw of the data law).
    train = setup.real.train
    reference = KNeighborsClassifier(5).fit(train.samples.numpy(), train.sensitive.numpy()).predict(real.samples.numpy())
    assert by_condition["utility_accuracy_real"] == pytest.approx(accuracy_score(y, reference), abs=1e-12)
    assert by_condition["utility_fraction"] == pytest.approx(1.0, abs=0.05)


def test_bad_options_are_refused_with_a_suggestion(setup, generated):
    requested, out = generated
    with pytest.raises(FairbenchError, match="Did you mean: inception"):
        evaluate(out.samples, requested, setup, seed=0, config=SuiteOptions(fid_features="incepton"))
    with pytest.raises(FairbenchError, match="kid_subset_size must be at least 2"):
        evaluate(out.samples, requested, setup, seed=0, config=SuiteOptions(kid_subset_size=1))


def test_options_come_from_a_metrics_spec_where_it_has_them():
    config = parse_config({"benchmark": {"name": "b"}, "model": {"kind": "gaussian", "means": [[0.0], [1.0]]},
                           "methods": [{"name": "conditional"}], "metrics": {"bootstrap": 7}})
    options = SuiteOptions.from_config(config.metrics)
    assert options.bootstrap == 7 and options.fid_features == "auto" and options.fid_backend == "clean-fid"


def test_runner_records_carry_quality_and_cost_under_registered_names(tmp_path):
    config = parse_config({
        "benchmark": {"name": "tiny", "n_samples": 120, "batch_size": 60},
        "model": {"kind": "gaussian", "means": [[-0.5, 0.0], [0.5, 0.0]], "n_real": 500},
        "sampler": {"scheduler": "ddim", "steps": 8},
        "methods": [{"name": "embedding_mixing"}],
    })
    setup = config.model_spec().build()
    record = run_cell(Job(config, 0, 0), setup, tmp_path, device="cpu")
    metrics = record["metrics"]
    assert _known(metrics) == set()
    assert metrics["fid_features"] == "raw" and metrics["fid"] > 0 and np.isfinite(metrics["kid"])
    assert metrics["peak_mem_basis"] == "rss_peak_growth" and metrics["peak_mem_mb"] >= 0
    assert metrics["nfe_per_sample"] == 8


def _record(label: str, seed: int, fid: float, features: str) -> dict:
    return {"label": label, "spec": {"benchmark": "b", "seed": seed, "method_index": 0},
            "metrics": {"epsilon": 0.1, "fid": fid, "kid": fid / 10, "fid_features": features, "fid_by_group": {"a": fid}}}


def test_leaderboard_never_puts_fids_of_different_extractors_in_one_column():
    records = [_record("m", 0, 1.0, "raw"), _record("m", 1, 3.0, "raw"), _record("n", 0, 50.0, "judge-penultimate")]
    frame = leaderboard_frame(records)
    assert {"fid@raw_mean", "fid@judge-penultimate_mean", "kid@raw_mean"} <= set(frame.columns)
    assert "fid_mean" not in frame.columns
    rows = frame.set_index("method")
    assert rows.loc["m", "fid@raw_mean"] == 2.0 and np.isnan(rows.loc["m", "fid@judge-penultimate_mean"])
    assert rows.loc["n", "fid@judge-penultimate_mean"] == 50.0 and np.isnan(rows.loc["n", "fid@raw_mean"])
    assert "| fid@raw ↓ |" in markdown_table(frame)


PEAK_CHILD = """
import json, torch
from fairbench.metrics.cost import PeakMemory
big = torch.ones(160 * 2**20 // 4)  # an earlier, higher peak of this process
del big
with PeakMemory("cpu") as memory:
    block = torch.ones(48 * 2**20 // 4)  # 48 MiB, touched
    block += 1
del block
print(json.dumps(memory.as_metrics()))
"""


def test_peak_memory_on_cpu_sees_the_block_even_below_an_earlier_peak():
    # In a fresh process: in this one, memory freed by earlier tests may be reused without
    # growing the resident set, which is what the metric measures.
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PEAK_CHILD], capture_output=True, text=True, check=True)
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["peak_mem_basis"] == "rss_peak_growth"
    if Path("/proc/self/clear_refs").exists():
        assert metrics["peak_mem_mb"] >= 40  # the high-water mark was reset at the start of the block


FRAGMENTED_CHILD = """
import json, numpy as np
from fairbench.metrics.cost import PeakMemory
held = [np.ones(8192) for _ in range(2000)]  # 64 KiB blocks: in the allocator's heap
kept = held[1::2]  # an earlier stage leaves every second block (and the heap's top) in use
del held
with PeakMemory("cpu") as memory:
    block = [np.ones(8192) for _ in range(800)]  # 50 MiB of the block's own, in 64 KiB pieces
print(json.dumps(memory.as_metrics()))
"""


def test_peak_memory_counts_the_block_s_own_memory_where_an_earlier_stage_left_holes_to_reuse():
    # Without returning the allocator's free memory first, the block fills the holes the
    # earlier stage left and the resident set does not grow: 0 MiB measured (the value
    # then depended on what ran before, e.g. on the threads of the previous job's measurement).
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FRAGMENTED_CHILD], capture_output=True, text=True, check=True)
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    if Path("/proc/self/clear_refs").exists() and sys.platform.startswith("linux"):
        assert 35 <= metrics["peak_mem_mb"] <= 60


def test_every_metric_has_formula_direction_citation_and_the_doc_is_up_to_date():
    for info in METRICS.values():
        assert info.formula and info.citation and info.direction in ("lower", "higher", "none")
        assert info.interval is None or info.interval_method
    for name in ("fd", "kl_uniform", "fd_pooled", "fd_corrected", "target_gap", "fid", "fid_by_group", "kid",
                 "kid_by_group", "utility_accuracy", "utility_fraction", "utility_dp_difference", "utility_eo_difference"):
        assert METRICS[name].blind_spot, f"{name} must say what it cannot see"
    assert (REPO / "docs" / "metrics.md").read_text(encoding="utf-8") == metrics_markdown(), (
        "docs/metrics.md is stale: run python -m fairbench.metrics.docs"
    )


def test_planted_controls_rank_as_they_should_on_the_leaderboard(setup):
    """An unfair method (each request obeyed), a fair-by-construction one (each sample's condition
    drawn uniformly) and noise samples: conditional is worst on per-group balance though pooled
    balance cannot tell, the fair sampler is balanced, noise is worst on utility."""
    judge = _judge()
    real = setup.real
    judged = dataclasses.replace(setup, judge=judge)
    options = SuiteOptions(kid_subsets=5, bootstrap=50, utility_target="sensitive")
    requested = torch.arange(N) % 2
    drawn = torch.from_numpy(np.random.default_rng(0).integers(0, 2, size=N))
    unfair = sample(setup.model, Conditional(), requested, scheduler_name="ddim", steps=10, seed=0, batch_size=N)
    fair = sample(setup.model, Conditional(), drawn, scheduler_name="ddim", steps=10, seed=0, batch_size=N)
    noise = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=real.samples.dtype) * 2.0
    runs = {"unfair": (unfair.samples, requested), "fair": (fair.samples, drawn), "noise": (noise, requested)}
    records = [
        {"label": label, "spec": {"benchmark": "b", "seed": 0, "method_index": i},
         "metrics": evaluate(samples, requested, judged, seed=0, final=final, config=options)}
        for i, (label, (samples, final)) in enumerate(runs.items())
    ]
    rows = leaderboard_frame(records).set_index("method")
    assert rows["fd_mean"].idxmax() == "unfair" and rows["fd_corrected_mean"].idxmax() == "unfair"
    assert rows.loc["fair", "fd_mean"] < 0.1 < 0.4 < rows.loc["unfair", "fd_mean"]
    assert rows.loc["unfair", "fd_pooled_mean"] < 0.1  # pooled: the unfair method looks balanced
    assert rows["utility_accuracy_mean"].idxmin() == "noise"
    # Chance, up to the noise of a neighbour vote over 400 points: the real test points near one
    # noise sample share its label, so the accuracy varies more than a binomial over 2000.
    assert rows.loc["noise", "utility_accuracy_mean"] == pytest.approx(0.5, abs=0.1)
    assert rows.loc["fair", "utility_fraction_mean"] == pytest.approx(1.0, abs=0.06)
    assert METRICS["fd"].direction == METRICS["target_gap"].direction == "lower"
    assert METRICS["utility_fraction"].direction == "higher" and METRICS["fd_pooled"].direction == "none"
    table = markdown_table(leaderboard_frame(records))
    assert " fd ↓ |" in table and " utility_fraction ↑ |" in table and " target_gap" not in table


@pytest.fixture(scope="module")
def digits_setup():
    """The suite on sklearn's real digits (bias 0.8 split), with logistic-regression judges for stroke
    and digit standing in for the CNN judge, and raw pixels as features."""
    from types import SimpleNamespace

    from sklearn.linear_model import LogisticRegression

    from fairbench.datasets import dataset_spec
    from fairbench.models.base import Capabilities

    data = dataset_spec({"name": "digits", "attribute": "stroke", "target": "digit", "bias": 0.8, "seed": 0}).load()
    parts = {split: data.subset(split) for split in ("train", "val", "test")}
    images = {k: p.images().to(torch.float64) for k, p in parts.items()}
    stroke = {k: p.labels("stroke") for k, p in parts.items()}
    digit = {k: p.labels("digit") for k, p in parts.items()}
    flat = lambda x: x.reshape(len(x), -1).numpy()  # noqa: E731
    both = np.r_[flat(images["train"]), flat(images["val"])]

    def judge_of(labels):
        fitted = LogisticRegression(max_iter=3000).fit(both, np.r_[labels["train"], labels["val"]])
        return lambda x: torch.from_numpy(fitted.predict_log_proba(flat(x)))

    real = RealData(samples=images["test"], sensitive=stroke["test"], target=digit["test"], target_values=tuple("0123456789"),
                    train=RealData(samples=images["train"], sensitive=stroke["train"], target=digit["train"]))
    model = SimpleNamespace(attribute_names=("light", "heavy"), sample_shape=(1, 8, 8), capabilities=Capabilities())
    from fairbench.models import Setup
    setup = Setup(model=model, real=real, judge=judge_of(stroke), target_judge=judge_of(digit))
    return setup, images, stroke


def test_digits_controls_unfair_real_split_fair_split_and_noise(digits_setup):
    """Real biased training images requested by their own stroke behave like conditional sampling
    of a perfect generator: worst balance, the training split's target gap. Held-out images with
    a stroke drawn at random (fair by construction): balanced, small gap. Noise: worst utility."""
    setup, images, stroke = digits_setup
    rng = np.random.default_rng(0)
    options = SuiteOptions(kid_subsets=5, bootstrap=100, fid_features="raw")
    n = len(images["train"])
    noise = torch.from_numpy(rng.uniform(-1, 1, size=(n, 1, 8, 8)))
    held_out = torch.cat([images["val"], images["test"]])
    runs = {
        "unfair": (images["train"], stroke["train"]),
        "fair": (held_out, torch.from_numpy(rng.integers(0, 2, size=len(held_out)))),
        "noise": (noise, torch.arange(n) % 2),
    }
    out = {label: evaluate(x, requested, setup, seed=0, config=options) for label, (x, requested) in runs.items()}
    # The judge errs on some real strokes, so the unfair control's groups read a little short of
    # 1 / 0 and the correction moves them back (noise, all judged one stroke, is no balance control).
    assert out["unfair"]["fd"] > 0.4 > 0.1 > out["fair"]["fd"]
    assert out["unfair"]["fd_corrected"] > out["unfair"]["fd"] and out["unfair"]["fd_pooled"] < 0.1
    assert out["unfair"]["target_gap"] == pytest.approx(out["unfair"]["target_gap_train"], abs=0.1)
    assert out["unfair"]["target_gap_ci"][0] > out["fair"]["target_gap_ci"][1]
    assert out["fair"]["target_gap"] < 0.2 and out["unfair"]["target_gap_train"] > 0.5 > out["unfair"]["target_gap_heldout"]
    # The fair control's gap is the sampling floor of its group sizes, which the null reference estimates.
    assert out["fair"]["target_gap_null"] == pytest.approx(out["fair"]["target_gap"], abs=0.07)
    assert out["unfair"]["target_gap"] > 3 * out["unfair"]["target_gap_null"]
    assert min(out, key=lambda k: out[k]["utility_accuracy"]) == "noise"
    assert out["fair"]["utility_fraction"] > 0.9 and out["noise"]["utility_fraction"] < 0.7
    # 64 raw features and at least 128 real test images per stroke: just enough for a per-group FID.
    assert min(g["n_real"] for g in out["fair"]["quality_groups"].values()) >= 128
    assert out["noise"]["fid_by_group"]["light"] > 10 * out["fair"]["fid_by_group"]["light"]
    assert out["noise"]["kid_by_group"]["light"] > 10 * out["fair"]["kid_by_group"]["light"]
    assert all(0.5 < a <= 1.0 for a in out["fair"]["judge_accuracy_by_class"].values())
