"""`fairbench audit`: samples written by `fairbench run --save-images` give back the run's
metrics exactly; planted unfair and fair sample sets rank the right way; bad folders and tables
are one error line naming the file, exit 2, nothing written."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fairbench.cli import main
from fairbench.records import MACHINE_METRICS
from fairbench.sample_files import read_sample_file, read_sample_folder, write_sample_folder

# Metrics of the sampling itself (cost, tau, the closed form of the Gaussian model): a run has
# them, samples made elsewhere do not.
RUN_ONLY = set(MACHINE_METRICS) | {"nfe_per_sample", "peak_mem_basis", "tau", "taus", "tau_search_nfe", "tv_exact",
                                   "s_per_1000_samples"}  # derived from samples_per_s by the leaderboard

GAUSSIAN = """
[benchmark]
name = "tiny-gaussian"
n_samples = 60
batch_size = 16
[model]
kind = "gaussian"
means = [[-1.0, 0.0], [1.0, 0.0]]
n_real = 60
[sampler]
steps = 6
[metrics]
epsilon_folds = 3
bootstrap = 50
kid_subsets = 3
kid_subset_size = 20
[[methods]]
name = "conditional"
[[methods]]
name = "attribute_switching"
tau = "reference"
search_batch_size = 4
[[methods]]
name = "embedding_mixing"
"""

DIGITS = """
[benchmark]
name = "tiny-digits"
n_samples = 24
batch_size = 12
[dataset]
name = "digits"
[model]
kind = "unet"
[model.unet]
block_out_channels = [8, 16]
steps = 2
batch_size = 8
[model.judge]
width = 8
feature_dim = 16
steps = 2
[model.guidance]
width = 8
steps = 2
[sampler]
steps = 3
[metrics]
epsilon_folds = 3
bootstrap = 20
kid_subsets = 2
kid_subset_size = 10
[[methods]]
name = "conditional"
[[methods]]
name = "attribute_switching"
tau = 500
"""


def _records(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((directory / "records").glob("*.json"))]


def _run_then_audit(tmp_path: Path, text: str) -> list[tuple[dict, dict]]:
    config = tmp_path / "config.toml"
    config.write_text(text)
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "--device", "cpu", "--save-images"]) == 0
    pairs = []
    for record in _records(run):
        folder = run / "samples" / record["job_key"][:16]
        audited = tmp_path / f"audit-{record['job_key'][:8]}"
        seed = str(record["spec"]["seed"])
        assert main(["audit", str(folder), "--real", str(config), "--out", str(audited), "--seed", seed, "--device", "cpu"]) == 0
        (audit_record,) = _records(audited)
        pairs.append((record, audit_record))
    return pairs


def _assert_same_measurements(run_record: dict, audit_record: dict) -> None:
    measured = {k: v for k, v in run_record["metrics"].items() if k not in RUN_ONLY}
    assert audit_record["metrics"] == measured  # exact: same inputs, same deterministic estimators
    assert audit_record["spec"]["epsilon_features"] == run_record["spec"]["epsilon_features"]


def test_audit_of_the_files_a_gaussian_run_wrote_reproduces_its_metrics(tmp_path):
    pairs = _run_then_audit(tmp_path, GAUSSIAN)
    assert len(pairs) == 3
    for run_record, audit_record in pairs:
        _assert_same_measurements(run_record, audit_record)
    finals = {r["spec"]["method"]["name"]: (tmp_path / "run" / "samples" / r["job_key"][:16] / "samples.csv").read_text()
              for r, _ in pairs}
    assert finals["conditional"].splitlines()[1:3] == ["00000.npy,s0,s0", "00001.npy,s1,s1"]
    assert finals["attribute_switching"].splitlines()[1:3] == ["00000.npy,s0,s1", "00001.npy,s1,s0"]


def test_audit_of_the_images_a_digits_run_wrote_reproduces_its_judge_based_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))
    pairs = _run_then_audit(tmp_path, DIGITS)
    for run_record, audit_record in pairs:
        _assert_same_measurements(run_record, audit_record)
        for column in ("fd", "kl_uniform", "fid", "kid", "utility_accuracy"):  # judge, real data and utility all measured
            assert column in audit_record["metrics"]
    folder = tmp_path / "run" / "samples" / pairs[0][0]["job_key"][:16]
    assert (folder / "00000.tif").read_bytes()[:2] in (b"II", b"MM")  # image files, float TIFF


def test_the_leaderboard_of_an_audit_has_the_columns_of_a_run(tmp_path):
    pairs = _run_then_audit(tmp_path, GAUSSIAN)
    run_header = (tmp_path / "run" / "leaderboard.csv").read_text().splitlines()[0].split(",")
    audit_header = (tmp_path / f"audit-{pairs[0][0]['job_key'][:8]}" / "leaderboard.csv").read_text().splitlines()[0].split(",")
    # rank groups compare a run's methods with one another (paired samples); an audit has one method
    measured = [c for c in run_header if not any(c.startswith(m) for m in RUN_ONLY) and not c.endswith("_group")]
    assert audit_header == measured


# ---------------------------------------------------------------------------------------------
# Planted controls, with a real-data folder (no judge: raw features)


def _write_png(path: Path, value: float, size: int = 4) -> None:
    Image.fromarray(np.full((size, size), value, dtype=np.uint8), mode="L").save(path)


@pytest.fixture
def real_folder(tmp_path) -> Path:
    """Dark images are value "a", bright ones "b"; each image's brightness varies a little."""
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = ["file,value"]
    for i in range(40):
        value = "a" if i % 2 == 0 else "b"
        _write_png(folder / f"{i}.png", (60 if value == "a" else 190) + rng.integers(-20, 20))
        rows.append(f"{i}.png,{value}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def _sample_set(folder: Path, requested: list[str], brightness: list[float]) -> Path:
    folder.mkdir()
    lines = ["file,requested"]
    for i, (value, level) in enumerate(zip(requested, brightness)):
        _write_png(folder / f"s{i}.png", level)
        lines.append(f"s{i}.png,{value}")
    (folder / "samples.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_planted_unfair_samples_rank_above_fair_ones(tmp_path, real_folder):
    rng = np.random.default_rng(1)
    requested = ["a", "b"] * 30
    levels = rng.integers(40, 210, size=60)
    # unfair: a request decides the look; fair: the look is drawn independently of the request
    unfair = _sample_set(tmp_path / "unfair", requested, [40 + (120 if r == "b" else 0) + rng.integers(0, 40) for r in requested])
    fair = _sample_set(tmp_path / "fair", requested, list(levels))
    out = tmp_path / "board"
    for folder in (unfair, fair):
        assert main(["audit", str(folder), "--real", str(real_folder), "--out", str(out), "--device", "cpu"]) == 0
    by_label = {r["label"]: r["metrics"] for r in _records(out)}
    assert by_label["unfair"]["epsilon"] > 0.9
    assert by_label["fair"]["epsilon"] < 0.4
    assert by_label["fair"]["epsilon_ci"][1] < by_label["unfair"]["epsilon_ci"][0]
    assert "fid" in by_label["fair"] and "fd" not in by_label["fair"]  # real data, no judge


# ---------------------------------------------------------------------------------------------
# Sample files


def test_one_channel_images_and_vectors_round_trip_exactly_and_rgb_to_eight_bits(tmp_path):
    torch.manual_seed(0)
    for shape in ((1, 5, 5), (2,), (3, 4, 4)):
        samples = torch.rand(6, *shape) * 2 - 1
        folder = write_sample_folder(tmp_path / f"s{len(shape)}{shape[0]}", samples, torch.arange(6) % 2,
                                     (torch.arange(6) + 1) % 2, ("x", "y"))
        back = read_sample_folder(folder, ("x", "y"))
        assert back.requested.tolist() == [0, 1] * 3 and back.final.tolist() == [1, 0] * 3
        if shape[0] == 3:
            assert (back.samples - samples).abs().max() <= 0.5 / 127.5 + 1e-6
        else:
            assert torch.equal(back.samples, samples)


def test_eight_bit_files_scale_to_minus_one_one(tmp_path):
    _write_png(tmp_path / "grey.png", 255)
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "rgb.jpg")
    assert torch.equal(read_sample_file(tmp_path / "grey.png"), torch.ones(1, 4, 4))
    assert read_sample_file(tmp_path / "rgb.jpg").shape == (3, 2, 2)


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file, exit 2, nothing written


def _good_samples(tmp_path: Path) -> Path:
    requested = ["a", "b"] * 6
    return _sample_set(tmp_path / "samples", requested, [50 + 100 * (r == "b") for r in requested])


def _table(folder: Path, text: str) -> None:
    (folder / "samples.csv").write_text(text)


BAD = [
    ("missing-folder", lambda f: shutil.rmtree(f), ["samples folder", "does not exist"]),
    ("folder-is-a-file", lambda f: (shutil.rmtree(f), f.write_text("x")), ["is not a folder"]),
    ("missing-table", lambda f: (f / "samples.csv").unlink(), ["samples.csv", "is missing"]),
    ("empty-table", lambda f: _table(f, ""), ["samples.csv", "is empty"]),
    ("no-requested-column", lambda f: _table(f, "file,value\ns0.png,a\n"), ["samples.csv", "'requested'"]),
    ("unknown-column", lambda f: _table(f, "file,requested,colour\ns0.png,a,red\n"), ["samples.csv", "'colour'"]),
    ("unknown-value", lambda f: _table(f, (f / "samples.csv").read_text().replace("s3.png,b", "s3.png,c")),
     ["samples.csv", "line 5", "'c'"]),
    ("listed-file-missing", lambda f: (f / "s2.png").unlink(), ["s2.png", "missing"]),
    ("file-not-listed", lambda f: _write_png(f / "extra.png", 10), ["extra.png", "not in"]),
    ("duplicate-row", lambda f: _table(f, "file,requested\ns0.png,a\ns0.png,b\n"), ["s0.png", "listed twice"]),
    ("unreadable-image", lambda f: (f / "s4.png").write_text("not an image"), ["s4.png", "not an image"]),
    ("truncated-image", lambda f: (f / "s5.png").write_bytes((f / "s5.png").read_bytes()[:40]), ["s5.png"]),
    ("mixed-sizes", lambda f: _write_png(f / "s6.png", 10, size=6), ["s6.png", "same size"]),
    ("outside-folder", lambda f: _table(f, "file,requested\n../real/0.png,a\n"), ["../real/0.png", "not inside"]),
    ("too-few-per-value", lambda f: _table(f, "file,requested\n" + "".join(f"s{i}.png,a\n" for i in range(12))),
     ["at least 2 values"]),
]


@pytest.mark.parametrize("name,damage,words", BAD, ids=[case[0] for case in BAD])
def test_bad_samples_are_one_error_line_and_nothing_is_written(tmp_path, real_folder, capsys, name, damage, words):
    folder = _good_samples(tmp_path)
    if name not in ("file-not-listed",):
        for extra in ("extra.png",):
            (folder / extra).unlink(missing_ok=True)
    damage(folder)
    out = tmp_path / "out"
    assert main(["audit", str(folder), "--real", str(real_folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fairbench: error: ")
    for word in words:
        assert word in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


BAD_REAL = [
    ("missing", lambda r: shutil.rmtree(r), ["--real", "does not exist"]),
    ("no-table", lambda r: (r / "labels.csv").unlink(), ["labels.csv", "is missing"]),
    ("wrong-header", lambda r: (r / "labels.csv").write_text("name,value\n0.png,a\n"), ["labels.csv", "file,value"]),
    ("image-missing", lambda r: (r / "3.png").unlink(), ["3.png", "missing"]),
    ("mixed-sizes", lambda r: _write_png(r / "5.png", 10, size=7), ["5.png", "same size"]),
    ("toml-without-tables", lambda r: (shutil.rmtree(r), r.with_suffix(".toml").write_text("x = 1\n")), ["neither"]),
]


@pytest.mark.parametrize("name,damage,words", BAD_REAL, ids=[case[0] for case in BAD_REAL])
def test_bad_real_data_is_one_error_line_and_nothing_is_written(tmp_path, real_folder, capsys, name, damage, words):
    folder = _good_samples(tmp_path)
    damage(real_folder)
    real = real_folder.with_suffix(".toml") if name.startswith("toml") else real_folder
    out = tmp_path / "out"
    assert main(["audit", str(folder), "--real", str(real), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fairbench: error: ")
    for word in words:
        assert word in err, err
    assert not out.exists()


def test_samples_of_another_shape_than_the_real_data_are_refused(tmp_path, real_folder, capsys):
    requested = ["a", "b"] * 6
    folder = tmp_path / "samples"
    folder.mkdir()
    rows = ["file,requested"]
    for i, value in enumerate(requested):
        Image.fromarray(np.full((4, 4, 3), 9 * i, dtype=np.uint8)).save(folder / f"s{i}.png")
        rows.append(f"s{i}.png,{value}")
    (folder / "samples.csv").write_text("\n".join(rows) + "\n")
    assert main(["audit", str(folder), "--real", str(real_folder), "--out", str(tmp_path / "out")]) == 2
    assert "shape [3, 4, 4]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The public metric functions, on a user's own arrays


def test_public_metric_functions_on_arrays_give_known_answers():
    from scipy.linalg import sqrtm
    from scipy.stats import norm

    from fairbench.metrics import (
        FeatureStats,
        epsilon_fairness,
        fairness_discrepancy,
        frechet_distance,
        kernel_distance,
        kl_to_uniform,
        train_synthetic_test_real,
    )

    rng = np.random.default_rng(0)
    requested = np.repeat([0, 1], 3000)
    shifted = rng.normal(size=(6000, 1)) + 2.0 * requested[:, None]
    estimate = epsilon_fairness(shifted, requested, bootstrap=200)
    assert estimate.value == pytest.approx(2 * norm.cdf(1.0) - 1, abs=0.04)  # TV of N(0,1) and N(2,1)
    assert estimate.interval[0] <= estimate.value <= estimate.interval[1]
    assert epsilon_fairness(rng.normal(size=(6000, 3)), requested, bootstrap=200).value < 0.05  # identical groups

    assert fairness_discrepancy([1.0, 0.0]) == pytest.approx(np.sqrt(0.5))
    assert kl_to_uniform([1.0, 0.0]) == pytest.approx(np.log(2))
    assert fairness_discrepancy([0.5, 0.5]) == 0.0 and kl_to_uniform([0.5, 0.5]) == 0.0

    generated, real = rng.normal(size=(500, 4)), rng.normal(size=(400, 4)) * 1.5 + 1.0
    g_cov, r_cov = np.cov(generated, rowvar=False), np.cov(real, rowvar=False)
    oracle = np.sum((generated.mean(0) - real.mean(0)) ** 2) + np.trace(g_cov + r_cov - 2 * sqrtm(g_cov @ r_cov).real)
    assert frechet_distance(FeatureStats.of(generated), FeatureStats.of(real)) == pytest.approx(oracle, rel=1e-6)
    assert abs(kernel_distance(generated, rng.normal(size=(500, 4)), subsets=10, subset_size=200)) < 0.05
    assert kernel_distance(generated, real, subsets=10, subset_size=200) > 0.5

    labels = (generated[:, 0] > 0).astype(int)
    utility = train_synthetic_test_real(generated, labels, real, (real[:, 0] > 0).astype(int), requested[:400] % 2)
    assert utility.accuracy > 0.95
