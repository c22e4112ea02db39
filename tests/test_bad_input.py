"""The bad-input corpus: each case ends with one line ``fairbench: error: ...`` naming the bad
value, exit status 2, no traceback, and nothing written."""

import os
from pathlib import Path

import pytest

from fairbench.cli import main

BASE = """\
[benchmark]
name = "bad-input"
n_samples = 40
seeds = [0]
batch_size = 20

[model]
kind = "gaussian"
means = [[-0.5, 0.0], [0.5, 0.0]]
std = 0.5
beta_schedule = "linear"

[sampler]
scheduler = "ddim"
steps = 4

[[methods]]
name = "conditional"

[[methods]]
name = "attribute_switching"
tau = 224
"""

# (id, old text, new text, words the error line must contain)
EDITS = [
    ("malformed-toml", "[sampler]", "[sampler", ["not valid TOML"]),
    ("unknown-section", "[sampler]", "[samplr]", ["[samplr]", "Did you mean: sampler?"]),
    ("unknown-benchmark-key", "n_samples = 40", "n_sample = 40", ["benchmark.'n_sample'", "n_samples"]),
    ("unknown-model-key", "std = 0.5", "sdt = 0.5", ["model.'sdt'", "std"]),
    ("unknown-method-key", 'name = "conditional"', 'name = "conditional"\nweigth = 0.5', ["'weigth'", "weight"]),
    ("unknown-method", 'name = "conditional"', 'name = "conditionl"', ["'conditionl'", "Did you mean: conditional?"]),
    ("unknown-model-kind", 'kind = "gaussian"', 'kind = "gauss"', ["'gauss'", "gaussian"]),
    ("unknown-scheduler", 'scheduler = "ddim"', 'scheduler = "pndm"', ["'pndm'", "ddim"]),
    ("unknown-beta-schedule", 'beta_schedule = "linear"', 'beta_schedule = "cosine"', ["'cosine'"]),
    ("tau-too-large", "tau = 224", "tau = 1000", ["tau 1000", "[-1, 999]"]),
    ("tau-too-small", "tau = 224", "tau = -2", ["tau -2", "[-1, 999]"]),
    ("tau-wrong-type", "tau = 224", "tau = true", ["tau", "True"]),
    ("tau-unknown-search", "tau = 224", 'tau = "refrence"', ["'refrence'", "Did you mean: reference?"]),
    ("tau-fraction-above-one", "tau = 224", "tau = 1.5", ["1.5"]),
    ("tau-missing", "tau = 224", "", ["tau is required"]),
    ("tau-on-wrong-method", 'name = "conditional"', 'name = "conditional"\ntau = 3', ["tau does not apply", "'conditional'"]),
    ("zero-samples", "n_samples = 40", "n_samples = 0", ["n_samples must be positive", "0"]),
    ("negative-samples", "n_samples = 40", "n_samples = -5", ["n_samples must be positive", "-5"]),
    ("zero-steps", "steps = 4", "steps = 0", ["steps must be positive"]),
    ("negative-batch", "batch_size = 20", "batch_size = -1", ["batch_size must be positive"]),
    ("sequential-half-width", "n_samples = 40", "n_samples = { half_width = 1.5, max = 80, start = 20 }",
     ["n_samples.half_width must be in (0, 1)", "1.5"]),
    ("sequential-max-below-start", "n_samples = 40", "n_samples = { half_width = 0.1, max = 10, start = 20 }",
     ["n_samples.max must be at least start"]),
    ("sequential-unknown-key", "n_samples = 40", "n_samples = { half_widht = 0.1, max = 80 }", ["'half_widht'", "half_width"]),
    ("sequential-growth", "n_samples = 40", "n_samples = { half_width = 0.1, max = 80, start = 20, growth = 1.0 }",
     ["growth must be above 1"]),
    ("string-sample-count", "n_samples = 40", 'n_samples = "40"', ["n_samples must be an integer", "'40'"]),
    ("empty-seeds", "seeds = [0]", "seeds = []", ["seeds"]),
    ("negative-seed", "seeds = [0]", "seeds = [-1]", ["seeds must be non-negative"]),
    ("one-attribute-value", "means = [[-0.5, 0.0], [0.5, 0.0]]", "means = [[-0.5, 0.0]]", ["means"]),
    ("ragged-means", "means = [[-0.5, 0.0], [0.5, 0.0]]", "means = [[-0.5, 0.0], [0.5]]", ["means"]),
    ("means-not-numbers", "means = [[-0.5, 0.0], [0.5, 0.0]]", 'means = [["a", 0.0], [0.5, 0.0]]', ["'a'"]),
    ("negative-std", "std = 0.5", "std = -0.5", ["std must be positive", "-0.5"]),
    ("attribute-names-mismatch", "std = 0.5", 'std = 0.5\nattribute_names = ["a", "b", "c"]', ["attribute_names must name 2"]),
    ("mixing-weight-out-of-range", 'name = "conditional"', 'name = "embedding_mixing"\nweight = 1.5', ["weight must be in [0, 1]", "1.5"]),
    ("negative-guidance-scale", 'name = "conditional"', 'name = "classifier_guidance"\nscale = -1.0', ["scale must be non-negative"]),
    ("duplicate-labels", 'name = "conditional"', 'name = "conditional"\nlabel = "x"\n[[methods]]\nname = "conditional"\nlabel = "x"', ["'x'"]),
    ("no-model", "[model]", "[unused]", ["[unused]"]),
    ("no-methods", '[[methods]]\nname = "conditional"\n\n[[methods]]\nname = "attribute_switching"\ntau = 224\n', "", ["no [methods] section"]),
    ("unknown-fid-backend", "[sampler]", '[metrics]\nfid_backend = "pytorch-fid"\n[sampler]', ["'pytorch-fid'"]),
    ("bad-confidence", "[sampler]", "[metrics]\nconfidence = 1.5\n[sampler]", ["confidence", "1.5"]),
    ("empty-sweep", "tau = 224", "tau = []", ["empty list"]),
    ("dataset-name-typo-on-gaussian", "[sampler]", '[dataset]\nname = "celebz"\n[sampler]', ["'celebz'", "Did you mean: celeba?"]),
    ("dataset-on-gaussian", "[sampler]", '[dataset]\nname = "digits"\n[sampler]', ["gaussian model kind takes no [dataset]"]),
    ("models-and-model", "[sampler]", '[[models]]\nkind = "gaussian"\nmeans = [[0.0], [1.0]]\n[sampler]', ["either [model] or [[models]]"]),
]


def _check_one_line(capsys, *words):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fairbench: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize("case,old,new,words", EDITS, ids=[e[0] for e in EDITS])
def test_bad_config(tmp_path, capsys, case, old, new, words):
    assert old in BASE, case
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace(old, new, 1))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 2
    _check_one_line(capsys, *words)
    assert not out.exists()


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.toml"
    path.write_text(BASE)
    return path


def test_config_path_missing(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    _check_one_line(capsys, "nope.toml", "does not exist")


def test_config_path_is_a_directory(tmp_path, capsys):
    assert main(["run", str(tmp_path)]) == 2
    _check_one_line(capsys, "is a directory")


def test_config_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes("[benchmark]\nname = \"caf\xe9\"\n".encode("latin-1"))
    assert main(["run", str(path)]) == 2
    _check_one_line(capsys, "latin1.toml")


def test_unreadable_config(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    path = tmp_path / "secret.toml"
    path.write_text(BASE)
    path.chmod(0)
    assert main(["run", str(path)]) == 2
    _check_one_line(capsys, "secret.toml")


def test_output_directory_is_a_file(good, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep")
    assert main(["run", str(good), "--out", str(target)]) == 2
    _check_one_line(capsys, "is not a directory")
    assert target.read_text() == "keep"


def test_output_directory_below_a_file(good, tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    assert main(["run", str(good), "--out", str(tmp_path / "file" / "out")]) == 2
    _check_one_line(capsys, "which is a file")


def test_unknown_executor(good, tmp_path, capsys):
    assert main(["run", str(good), "--out", str(tmp_path / "o"), "--executor", "dask"]) == 2
    _check_one_line(capsys, "'dask'")
    assert not (tmp_path / "o").exists()


def test_unknown_device(good, tmp_path, capsys):
    assert main(["run", str(good), "--out", str(tmp_path / "o"), "--device", "tpu"]) == 2
    _check_one_line(capsys, "'tpu'")


def test_cuda_requested_without_cuda(good, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["run", str(good), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    _check_one_line(capsys, "'cuda'", "not available")


def test_tau_search_batch_size_zero(good, capsys):
    assert main(["tau", str(good), "--search", "direct", "--batch-size", "0"]) == 2
    _check_one_line(capsys, "--batch-size", "0")


def test_unknown_tau_search_on_the_command_line(good, capsys):
    assert main(["tau", str(good), "--search", "bisect"]) == 2
    _check_one_line(capsys, "'bisect'")


def test_leaderboard_of_a_directory_without_records(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    _check_one_line(capsys, str(tmp_path))


def test_leaderboard_with_a_torn_record(tmp_path, capsys):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "x.json").write_text('{"spec": ')
    assert main(["leaderboard", str(tmp_path)]) == 2
    _check_one_line(capsys, "x.json")
    assert not (tmp_path / "leaderboard.csv").exists()


def test_existing_results_are_kept_when_a_later_config_is_bad(good, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(good), "--out", str(out), "--device", "cpu"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "locks" not in p.parts}
    good.write_text(BASE.replace("tau = 224", "tau = 5000"))
    capsys.readouterr()
    assert main(["run", str(good), "--out", str(out), "--device", "cpu"]) == 2
    _check_one_line(capsys, "5000")
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "locks" not in p.parts}
    assert after == before
