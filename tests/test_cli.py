"""The command line end to end on the analytic Gaussian benchmark, and its one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fairbench.cli import main

SMALL = """
[benchmark]
name = "gaussian-small"
n_samples = 400
seeds = [0, 1]
batch_size = 150
[model]
kind = "gaussian"
means = [[-0.5, 0.0], [0.5, 0.0]]
std = 0.5
beta_schedule = "linear"
num_train_timesteps = 1000
[sampler]
scheduler = "ddim"
steps = 20
[[methods]]
name = "conditional"
[[methods]]
name = "attribute_switching"
tau = 224
[[methods]]
name = "attribute_switching"
tau = "direct"
search_batch_size = 32
"""


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def test_run_writes_one_record_per_method_and_seed_and_a_leaderboard(config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--device", "cpu"]) == 0
    records = sorted((out / "records").glob("*.json"))
    assert len(records) == 6
    record = json.loads(records[0].read_text())
    assert set(record) >= {"spec", "metrics", "provenance", "spec_hash", "label"}
    assert set(record["provenance"]) >= {"versions", "git_sha", "device", "seed", "batch_size"}
    from fairbench.records import spec_hash

    for path in records:
        r = json.loads(path.read_text())
        assert r["spec_hash"] == spec_hash(r["spec"])
        low, high = r["metrics"]["epsilon_ci"]
        assert low <= r["metrics"]["epsilon"] <= high
        assert r["metrics"]["nfe_per_sample"] == 20
    board = (out / "leaderboard.md").read_text()
    for label in ("conditional", "attribute_switching(tau=224)", "attribute_switching(tau=direct)"):
        assert f"| {label} |" in board
    csv = (out / "leaderboard.csv").read_text().splitlines()
    assert len(csv) == 4 and csv[0].startswith("method,")


def test_records_do_not_depend_on_batch_size(config, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    main(["run", str(config), "--out", str(a), "--device", "cpu"])
    config.write_text(SMALL.replace("batch_size = 150", "batch_size = 400"))
    main(["run", str(config), "--out", str(b), "--device", "cpu"])
    for path in (a / "records").glob("*.json"):
        left, right = json.loads(path.read_text()), json.loads((b / "records" / path.name).read_text())
        for key in ("epsilon", "epsilon_ci", "tau", "tv_exact"):
            assert left["metrics"].get(key) == right["metrics"].get(key)


def test_tau_json_output(config, capsys):
    assert main(["tau", str(config), "--search", "reference", "--json", "--batch-size", "16"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"tau", "search", "curve", "nfe"}
    assert payload["search"] == "reference" and isinstance(payload["tau"], int)
    assert payload["curve"][0][0] == -1 and len(payload["curve"]) == 21
    assert payload["nfe"] == 2 * 16 * 20


def test_ls_lists_every_registry(capsys):
    assert main(["ls"]) == 0
    text = capsys.readouterr().out
    for name in ("attribute_switching", "embedding_mixing", "classifier_guidance", "gaussian", "ddim",
                 "dpm_solver", "reference", "direct", "epsilon"):
        assert name in text


def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fairbench", *args], capture_output=True, text=True, cwd=cwd)


BAD = [
    ("method", 'name = "conditional"', 'name = "atribute_switching"\ntau = 3', "Did you mean: attribute_switching?"),
    ("scheduler", 'scheduler = "ddim"', 'scheduler = "ddmi"', "Did you mean: ddim?"),
    ("key", "std = 0.5", "std = 0.5\nstdev = 1", "Unknown key model.'stdev'"),
    ("tau range", "tau = 224", "tau = 1000", "tau 1000 is out of range [-1, 999]"),
    ("tau type", "tau = 224", "tau = true", "tau"),
    ("tau search", 'tau = "direct"', 'tau = "bisect"', "'bisect'"),
    ("n_samples", "n_samples = 400", "n_samples = 0", "n_samples must be positive"),
    ("steps", "steps = 20", "steps = -3", "steps must be positive"),
    ("kind", 'kind = "gaussian"', 'kind = "gausian"', "Did you mean: gaussian?"),
    ("toml", "[sampler]", "[sampler", "not valid TOML"),
]


@pytest.mark.parametrize("what,old,new,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_gives_one_line_exit_2_and_writes_nothing(tmp_path, capsys, what, old, new, message):
    path = tmp_path / "bad.toml"
    assert old in SMALL
    path.write_text(SMALL.replace(old, new, 1))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fairbench: error:"), lines
    assert message in lines[0]
    assert not out.exists()


def test_missing_config_and_unknown_subcommand(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench: error:") and "nope.toml" in err
    # the real entry point, in a fresh interpreter: one line, no traceback, exit 2
    result = _run_cli("rn")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_output_directory_that_is_a_file(config, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main(["run", str(config), "--out", str(target)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_output_directory_below_a_file(config, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", str(config), "--out", str(blocker / "sub")]) == 2
    assert "which is a file" in capsys.readouterr().err
