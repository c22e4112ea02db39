"""Regression checks: tolerance rules, matching, the CLI's exit codes and the pytest plugin."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fairbench.check import compare_records, interval_allowance, load_records, parse_check
from fairbench.cli import main
from fairbench.config import parse_config
from fairbench.errors import FairbenchError
from fairbench.records import make_record
from fairbench.runner import run_benchmark
from fairbench.testing import assert_no_regression

REPO = Path(__file__).resolve().parents[1]


def record(label="switching", seed=0, *, benchmark="bench", model=None, **metrics) -> dict:
    spec = {"benchmark": benchmark, "method": {"name": label}, "seed": seed}
    if model is not None:
        spec["model"] = {"kind": model}
    return make_record(spec=spec, label=label, metrics=metrics, provenance={"seed": seed})


def pair(base_metrics: dict, new_metrics: dict, *, model=None, **spec) -> list:
    result = compare_records([record(model=model, **new_metrics)], [record(model=model, **base_metrics)], parse_check(spec))
    return {c.metric: c for c in result.comparisons}


# ---------------------------------------------------------------------------------------------
# The rules, against hand-computed allowances.


def test_interval_rule_adds_facing_half_widths_in_quadrature():
    base = {"epsilon": 0.50, "epsilon_ci": [0.45, 0.55]}
    allowed = math.hypot(0.05, 0.05)
    moved = pair(base, {"epsilon": 0.58, "epsilon_ci": [0.53, 0.63]})["epsilon"]
    assert moved.moved and moved.allowed == pytest.approx(allowed) and moved.change == pytest.approx(0.08)
    held = pair(base, {"epsilon": 0.56, "epsilon_ci": [0.51, 0.61]})["epsilon"]
    assert not held.moved and held.allowed == pytest.approx(allowed)
    # k widens the allowance proportionally
    assert not pair(base, {"epsilon": 0.58, "epsilon_ci": [0.53, 0.63]}, k=2.0)["epsilon"].moved


def test_interval_rule_uses_the_sides_that_face_each_other():
    # epsilon clipped at 0: the baseline's interval extends upward only
    base = {"epsilon": 0.0, "epsilon_ci": [0.0, 0.004]}
    up = pair(base, {"epsilon": 0.011, "epsilon_ci": [0.0, 0.043]})["epsilon"]
    assert up.allowed == pytest.approx(math.hypot(0.004, 0.011)) and not up.moved
    # downward from 0.3 [0.25, 0.40] to 0.1 [0.05, 0.12]: base's lower side 0.05, new's upper side 0.02
    assert interval_allowance(0.3, 0.1, (0.25, 0.40), (0.05, 0.12), 1.0) == pytest.approx(math.hypot(0.05, 0.02))
    # a side without an interval contributes nothing
    assert interval_allowance(0.3, 0.1, None, (0.05, 0.12), 1.0) == pytest.approx(0.02)


def test_configured_bound_replaces_the_interval_rule():
    base = {"epsilon": 0.5, "epsilon_ci": [0.0, 1.0]}
    assert pair(base, {"epsilon": 0.56, "epsilon_ci": [0.0, 1.0]}, tolerance={"epsilon": 0.05})["epsilon"].moved
    assert not pair(base, {"epsilon": 0.54, "epsilon_ci": [0.0, 1.0]}, tolerance={"epsilon": 0.05})["epsilon"].moved
    fid = pair({"fid": 40.0}, {"fid": 41.9}, tolerance={"fid": "5%"})["fid"]  # 5% of 40 = 2
    assert fid.allowed == pytest.approx(2.0) and not fid.moved
    assert pair({"fid": 40.0}, {"fid": 42.1}, tolerance={"fid": "5%"})["fid"].moved


def test_a_value_outside_its_own_interval_is_a_broken_record():
    base = {"epsilon": 0.50, "epsilon_ci": [0.45, 0.55]}
    # epsilon raised by 0.3 with its interval left in place: the interval rule would allow
    # about the gap itself; the record is refused instead, whatever the tolerance
    raised = pair(base, {"epsilon": 0.80, "epsilon_ci": [0.45, 0.55]})["epsilon"]
    assert raised.moved and raised.rule == "outside its own interval (new)" and raised.allowed is None
    assert pair(base, {"epsilon": 0.80, "epsilon_ci": [0.45, 0.55]}, tolerance={"epsilon": 1.0})["epsilon"].moved
    assert pair(base, {"epsilon": 0.80, "epsilon_ci": [0.45, 0.55]}, fail_on="worse")["epsilon"].moved
    broken_base = pair({"epsilon": 0.1, "epsilon_ci": [0.45, 0.55]}, base)["epsilon"]
    assert broken_base.moved and broken_base.rule == "outside its own interval (baseline)"
    # the ends themselves (and floating-point noise beyond them) are inside
    assert not pair(base, {"epsilon": 0.55 + 1e-12, "epsilon_ci": [0.50, 0.55]})["epsilon"].moved


def test_a_retrain_of_the_same_config_passes_and_a_regression_still_fails():
    # two cold trainings of the digits config: conditional epsilon 0.874 [0.844, 0.902] and
    # 0.832 (interval of the same width); the interval rule alone allows about 0.042
    base = {"epsilon": 0.874, "epsilon_ci": [0.844, 0.902]}
    retrain = {"epsilon": 0.832, "epsilon_ci": [0.802, 0.860]}
    earlier = {"epsilon": 0.06}  # the bound from that one measured gap (the measured file's replaces it by default)
    trained = pair(base, retrain, model="unet", training_spread=earlier)["epsilon"]
    assert not trained.moved and "training spread 0.06" in trained.rule
    assert trained.allowed == pytest.approx(math.hypot(math.hypot(0.030, 0.028), 0.06))
    # an analytic model has nothing to retrain: its epsilon keeps the interval rule alone
    assert pair(base, retrain, model="gaussian")["epsilon"].moved
    # a real regression (epsilon up 0.3, interval moved along) fails on a trained model too
    worse = pair(base, {"epsilon": 1.0, "epsilon_ci": [0.97, 1.0]}, model="unet", training_spread=earlier)["epsilon"]
    assert worse.moved
    shifted = {"epsilon": 0.574, "epsilon_ci": [0.544, 0.602]}
    assert pair(base, shifted, model="unet", training_spread=earlier)["epsilon"].moved
    # the spread is configurable, and a configured tolerance replaces it
    assert pair(base, retrain, model="unet", training_spread={"epsilon": 0})["epsilon"].moved
    assert not pair(base, retrain, model="unet", training_spread={"epsilon": "10%"})["epsilon"].moved
    assert pair(base, retrain, model="unet", tolerance={"epsilon": 0.01})["epsilon"].moved
    # a metric the table does not name keeps its measured spread; a spread of 0 makes it exact again;
    # a p-value is not compared
    compared = pair({"fid": 13.7, "epsilon_p_value": 0.001}, {"fid": 12.9, "epsilon_p_value": 0.2}, model="unet",
                    training_spread=earlier)
    assert not compared["fid"].moved and "training spread" in compared["fid"].rule
    assert "epsilon_p_value" not in compared
    assert pair({"fid": 13.7}, {"fid": 12.9}, model="unet", training_spread={"fid": 0})["fid"].moved


def test_each_retrained_method_keeps_its_own_training_spread():
    """A method that was retrained gets 2 sqrt(2) times its own sd, the others the pooled sd:
    the searched tau of attribute switching jumps between retrains, conditional sampling barely
    moves, and one pooled bound would be too loose for the one and too tight for the other."""
    from fairbench.check import MEASURED_SPREAD, TWO_TRAININGS

    own = MEASURED_SPREAD.by_method["epsilon"]
    steady, jumpy = min(own, key=own.get), max(own, key=own.get)
    assert own[jumpy] > 3 * own[steady]
    base, new = {"epsilon": 0.50, "epsilon_ci": [0.48, 0.52]}, {"epsilon": 0.60, "epsilon_ci": [0.58, 0.62]}
    for label in (steady, jumpy, "a method never retrained"):
        result = compare_records([record(label, model="unet", **new)], [record(label, model="unet", **base)], parse_check({}))
        (c,) = [c for c in result.comparisons if c.metric == "epsilon"]
        sd = own.get(label, MEASURED_SPREAD.pooled["epsilon"])
        assert c.allowed == pytest.approx(math.hypot(math.hypot(0.02, 0.02), float(f"{TWO_TRAININGS * sd:.3g}")))
        assert c.moved == (c.allowed < 0.1)


def test_quantities_without_interval_must_agree_exactly():
    assert pair({"tv_exact": 0.25}, {"tv_exact": 0.25 + 1e-9})["tv_exact"].moved is False
    assert pair({"tv_exact": 0.25}, {"tv_exact": 0.251})["tv_exact"].moved is True
    assert pair({"tau": 640}, {"tau": 620})["tau"].moved is True
    assert pair({"tv_exact": 0.0}, {"tv_exact": 1e-12})["tv_exact"].moved is False


def test_timing_is_excluded_unless_given_a_bound():
    base, new = {"wall_s": 1.0, "samples_per_s": 100.0}, {"wall_s": 9.0, "samples_per_s": 5.0}
    assert pair(base, new) == {}
    compared = pair(base, new, tolerance={"wall_s": "100%"})
    assert set(compared) == {"wall_s"} and compared["wall_s"].moved


def test_fail_on_worse_passes_improvements_but_not_undirected_changes():
    base = {"epsilon": 0.5, "epsilon_ci": [0.49, 0.51], "tau": 600}
    better = pair(base, {"epsilon": 0.1, "epsilon_ci": [0.09, 0.11], "tau": 500}, fail_on="worse")
    assert not better["epsilon"].moved and "better" in better["epsilon"].rule
    assert better["tau"].moved  # tau has no better direction
    worse = pair(base, {"epsilon": 0.9, "epsilon_ci": [0.89, 0.91], "tau": 600}, fail_on="worse")
    assert worse["epsilon"].moved and not worse["tau"].moved


def test_missing_values_and_metrics():
    compared = pair({"epsilon_ci": [0, 1], "tau": 600, "nfe_per_sample": None}, {"nfe_per_sample": None})
    assert compared["tau"].moved and compared["tau"].rule == "missing in new record"
    assert not compared["nfe_per_sample"].moved


def test_missing_records_fail_unless_allowed_and_new_ones_are_listed():
    base = [record("a", epsilon=0.1), record("b", epsilon=0.2)]
    new = [record("a", epsilon=0.1), record("c", epsilon=0.3)]
    result = compare_records(new, base)
    assert not result.passed and [c.label for c in result.moved] == ["b"]
    assert result.not_in_baseline == (("c", 0),)
    assert compare_records(new, base, parse_check({"allow_missing": True})).passed


def test_matching_by_label_and_seed_survives_a_spec_change():
    base = record("a", epsilon=0.10, epsilon_ci=[0.08, 0.12])
    changed = copy.deepcopy(base)
    changed["spec"]["metrics"] = {"new_option": 1}
    changed = make_record(spec=changed["spec"], label="a", metrics={"epsilon": 0.5, "epsilon_ci": [0.48, 0.52]}, provenance={})
    with pytest.raises(FairbenchError, match="no new record matches a baseline record by spec hash"):
        compare_records([changed], [base])
    result = compare_records([changed], [base], parse_check({"match": "label_seed"}))
    assert [c.metric for c in result.moved] == ["epsilon"]


@pytest.mark.parametrize(
    "table, message",
    [
        ({"tolerance": {"epsilom": 0.1}}, "Did you mean: epsilon?"),
        ({"tolerance": {"epsilon": -1}}, "non-negative"),
        ({"tolerance": {"epsilon": "lots"}}, "not a tolerance"),
        ({"k": 0}, "check.k must be positive"),
        ({"match": "hash"}, "not allowed"),
        ({"tolerence": {}}, "Did you mean: tolerance?"),
        ({"training_spread": {"epsilon": -0.1}}, "non-negative"),
        ({"training_spread": {"epsilom": 0.1}}, "Did you mean: epsilon?"),
    ],
)
def test_bad_settings_are_refused_with_one_line(table, message):
    with pytest.raises(FairbenchError, match=message.replace("?", r"\?")):
        spec = parse_check(table)
        compare_records([record(epsilon=0.1)], [record(epsilon=0.1)], spec)


# ---------------------------------------------------------------------------------------------
# Real runs: a rerun passes, a planted regression fails.

SMALL = {
    "benchmark": {"name": "gaussian-check", "n_samples": 300, "seeds": [0], "batch_size": 300},
    "model": {"kind": "gaussian", "means": [[-0.5, 0.0], [0.5, 0.0]], "std": 0.5},
    "sampler": {"scheduler": "ddim", "steps": 10},
    "methods": [
        {"name": "conditional"},
        {"name": "attribute_switching", "tau": "reference", "search_batch_size": 32},
        {"name": "embedding_mixing", "weight": 0.5},
    ],
    "metrics": {"bootstrap": 100},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """The same small config run twice, into two directories."""
    outs = []
    for name in ("baseline", "rerun"):
        out = tmp_path_factory.mktemp(name)
        run_benchmark(parse_config(SMALL, source="test"), out, device="cpu", log=lambda message: None)
        outs.append(out)
    return outs[0], outs[1]


def plant(run: Path, target: Path, label: str, shift: float, *, interval: bool = True) -> Path:
    """Copy a run and move the epsilon of one method's record (and its interval, unless told not) by `shift`."""
    shutil.copytree(run, target)
    for path in (target / "records").glob("*.json"):
        data = json.loads(path.read_text())
        if data["label"] == label:
            data["metrics"]["epsilon"] += shift
            if interval:
                data["metrics"]["epsilon_ci"] = [b + shift for b in data["metrics"]["epsilon_ci"]]
            path.write_text(json.dumps(data))
    return target


def test_rerun_of_the_same_config_passes(runs, capsys):
    baseline, rerun = runs
    assert main(["check", str(rerun), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 3 record pairs") and "excluded: epsilon_p_value, measure_s, peak_mem_mb, samples_per_s, tau_search_s, wall_s" in out


def test_records_pair_by_spec_hash_after_the_methods_are_reordered(runs, tmp_path, capsys):
    baseline, _ = runs
    reordered = copy.deepcopy(SMALL)
    reordered["methods"] = [{"name": "embedding_mixing", "weight": 0.25}] + SMALL["methods"][::-1]
    run_benchmark(parse_config(reordered, source="test"), tmp_path / "reordered", device="cpu", log=lambda message: None)
    assert main(["check", str(tmp_path / "reordered"), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 3 record pairs") and "1 new records have no baseline" in out  # the inserted method


def test_planted_regression_fails_with_a_table(runs, tmp_path, capsys):
    baseline, rerun = runs
    planted = plant(rerun, tmp_path / "planted", "embedding_mixing(weight=0.5)", 0.4)
    assert main(["check", str(planted), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["method", "seed", "metric", "baseline", "new", "change", "allowed", "rule"]
    assert len(lines) == 3 and lines[1].startswith("embedding_mixing(weight=0.5)") and " epsilon " in lines[1]
    assert "MOVED" in lines[1] and lines[2].startswith("FAILED: 3 record pairs")
    # a bound wide enough lets it pass; a single baseline record file works as a baseline
    assert main(["check", str(planted), "--baseline", str(baseline), "--tolerance", "epsilon=0.5"]) == 0
    one = next(p for p in (baseline / "records").glob("*.json") if "embedding_mixing" in p.read_text())
    assert main(["check", str(planted), "--baseline", str(one)]) == 1


def test_a_raised_value_with_its_interval_left_in_place_fails(runs, tmp_path, capsys):
    baseline, rerun = runs
    planted = plant(rerun, tmp_path / "planted", "conditional", 0.3, interval=False)
    assert main(["check", str(planted), "--baseline", str(baseline), "--tolerance", "epsilon=1"]) == 1
    assert "outside its own interval (new)" in capsys.readouterr().out


def test_check_config_table(runs, tmp_path, capsys):
    baseline, rerun = runs
    planted = plant(rerun, tmp_path / "planted", "conditional", -0.3)
    config = tmp_path / "check.toml"
    config.write_text('[check]\nfail_on = "worse"\n')
    assert main(["check", str(planted), "--baseline", str(baseline), "--config", str(config)]) == 0
    config.write_text('[check]\ntolerance = { epsilon = 0.01 }\nfail_on = "worse"\n')
    assert main(["check", str(rerun), "--baseline", str(baseline), "--config", str(config), "--all"]) == 0
    assert "tolerance 0.01" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tolerance", "epsilon"], "is not METRIC=VALUE"),
        (["--tolerance", "epsilom=0.1"], "Did you mean: epsilon?"),
        (["--match", "hash"], "invalid choice"),
        (["--k", "-1"], "k must be positive"),
        (["--config", "missing.toml"], "is not a file"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(runs, argv, message, capsys):
    baseline, rerun = runs
    assert main(["check", str(rerun), "--baseline", str(baseline), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench: error: ") and err.count("\n") == 1 and message in err


def test_cli_refuses_missing_paths_and_non_records(runs, tmp_path, capsys):
    baseline, rerun = runs
    assert main(["check", str(rerun)]) == 2
    assert main(["check", str(rerun), "--baseline", str(tmp_path / "none")]) == 2
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert main(["check", str(rerun), "--baseline", str(tmp_path / "junk.json")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(e.startswith("fairbench: error: ") for e in errors)
    assert "--baseline" in errors[0] and "does not exist" in errors[1] and "not a fairbench record" in errors[2]


def test_load_records_reads_directories_and_files(runs):
    baseline, _ = runs
    records = load_records(baseline)
    assert len(records) == 3
    assert load_records(baseline / "records") == records


# ---------------------------------------------------------------------------------------------
# The pytest plugin.


def test_assert_no_regression_fails_the_test_with_the_table(runs, tmp_path):
    baseline, rerun = runs
    assert assert_no_regression(rerun, baseline).passed
    planted = plant(rerun, tmp_path / "planted", "conditional", 0.25)
    with pytest.raises(pytest.fail.Exception) as failure:
        assert_no_regression(planted, baseline)
    assert "conditional" in str(failure.value) and "epsilon" in str(failure.value) and "MOVED" in str(failure.value)
    assert assert_no_regression(planted, baseline, tolerance={"epsilon": 0.3}).passed


def test_fixture_registers_as_a_pytest_plugin(runs, tmp_path):
    baseline, rerun = runs
    planted = plant(rerun, tmp_path / "planted", "conditional", 0.25)
    (tmp_path / "test_user.py").write_text(
        "def test_rerun(fairbench_check):\n"
        f"    fairbench_check({str(rerun)!r}, {str(baseline)!r})\n\n"
        "def test_planted(fairbench_check):\n"
        f"    fairbench_check({str(planted)!r}, {str(baseline)!r})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "fairbench.testing", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), str(tmp_path / "test_user.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    assert "fairbench check: 3 record pairs" in done.stdout and "MOVED" in done.stdout


def test_the_default_training_spread_is_the_measured_retrain_spread():
    """Every metric the retrains measured gets 2 sqrt(2) sd by default; a change of two retrain sds
    passes on a trained model and fails on the analytic one, where nothing is retrained."""
    from fairbench.check import DEFAULT_TRAINING_SPREAD
    from fairbench.retrain_spread import RetrainSpread

    spreads = RetrainSpread.measured().pooled
    assert {"epsilon", "fd", "target_gap", "fid", "kid", "utility_fraction"} <= set(spreads)
    for name, sd in spreads.items():
        assert DEFAULT_TRAINING_SPREAD[name] == pytest.approx(2 * math.sqrt(2) * sd, rel=0.01)
    assert RetrainSpread.measured("gaussian").pooled == {}
    for name in ("fid", "target_gap"):
        base, new = {name: 0.5}, {name: 0.5 + 2 * spreads[name]}
        assert not pair(base, new, model="unet")[name].moved
        assert pair(base, new, model="gaussian")[name].moved
