"""Grids, content-addressed resumable jobs, concurrency and executors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fairbench.config import load_grid, parse_grid
from fairbench.errors import FairbenchError
from fairbench.records import comparable, read_records
from fairbench.runner import plan, run_benchmark

GRID = """
[benchmark]
name = "grid"
n_samples = 400
seeds = [0]
batch_size = 100
shard_size = 200
[[models]]
label = "overlap"
kind = "gaussian"
means = [[-0.5, 0.0], [0.5, 0.0]]
std = 0.5
[[models]]
label = "separated"
kind = "gaussian"
means = [[-0.5, 0.0], [0.5, 0.0]]
std = 0.1
[sampler]
scheduler = "ddim"
steps = 20
[[methods]]
name = "conditional"
[[methods]]
name = "attribute_switching"
tau = [100, 400]
[[methods]]
name = "attribute_switching"
tau = "direct"
search_batch_size = 32
"""


@pytest.fixture
def grid(tmp_path) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    return path


def _comparable_records(directory: Path) -> dict:
    return {r["job_key"]: comparable(r) for r in read_records(directory)}


def test_grid_expands_models_and_sweeps(grid):
    configs = load_grid(grid)
    assert [c.benchmark.name for c in configs] == ["grid/overlap", "grid/separated"]
    assert [m.display for m in configs[0].methods] == [
        "conditional", "attribute_switching(tau=100)", "attribute_switching(tau=400)", "attribute_switching(tau=direct)"
    ]
    jobs = plan(configs)
    assert len(jobs) == 2 * 4 and len({job.key for job in jobs}) == len(jobs)


def test_bad_grids_are_refused():
    with pytest.raises(FairbenchError, match="distinct 'label'"):
        parse_grid({"benchmark": {"name": "x"}, "models": [{"kind": "gaussian", "means": [[0], [1]]}] * 2,
                    "methods": [{"name": "conditional"}]})
    with pytest.raises(FairbenchError, match="empty list"):
        parse_grid({"benchmark": {"name": "x"}, "model": {"kind": "gaussian", "means": [[0], [1]]},
                    "methods": [{"name": "attribute_switching", "tau": []}]})
    with pytest.raises(FairbenchError, match="either"):
        parse_grid({"benchmark": {"name": "x"}, "model": {"kind": "gaussian", "means": [[0], [1]]},
                    "models": [], "methods": [{"name": "conditional"}]})


def test_rerun_reuses_everything_and_changes_nothing(grid, tmp_path):
    out = tmp_path / "out"
    run_benchmark(load_grid(grid), out, log=lambda m: None)
    first = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    shards = sorted((out / "shards").rglob("*.safetensors"))
    assert len(first) == 8 and len(shards) == 8 * 2
    mtimes = {p: p.stat().st_mtime_ns for p in shards}
    lines = []
    run_benchmark(load_grid(grid), out, log=lines.append)
    assert all("reused" in line for line in lines)
    assert {p.name: p.read_bytes() for p in (out / "records").glob("*.json")} == first
    assert {p: p.stat().st_mtime_ns for p in shards} == mtimes


def test_killed_run_resumes_to_the_same_records(grid, tmp_path):
    reference = tmp_path / "reference"
    run_benchmark(load_grid(grid), reference, log=lambda m: None)
    out = tmp_path / "killed"
    for wait_for in ("shards", "records"):  # kill mid-shard-work, then again after some records
        proc = subprocess.Popen([sys.executable, "-m", "fairbench", "run", str(grid), "--out", str(out), "--device", "cpu"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            folder = out / wait_for
            if folder.exists() and any(p.suffix in (".json", ".safetensors") for p in folder.rglob("*")):
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(list((out / "records").glob("*.json"))) < 8  # it really was interrupted
    for path in (out / "records").glob("*.json"):
        json.loads(path.read_text())  # nothing torn
    run_benchmark(load_grid(grid), out, log=lambda m: None)
    assert _comparable_records(out) == _comparable_records(reference)


def test_two_runs_on_one_directory_do_not_corrupt_each_other(grid, tmp_path):
    out = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-m", "fairbench", "run", str(grid), "--out", str(out), "--device", "cpu"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    reference = tmp_path / "reference"
    run_benchmark(load_grid(grid), reference, log=lambda m: None)
    assert _comparable_records(out) == _comparable_records(reference)
    assert (out / "leaderboard.csv").read_text().count("\n") == 1 + 8


def test_ray_executor_gives_the_same_records_as_local(grid, tmp_path):
    pytest.importorskip("ray")
    local, distributed = tmp_path / "local", tmp_path / "ray"
    run_benchmark(load_grid(grid), local, log=lambda m: None)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        run_benchmark(load_grid(grid), distributed, executor="ray", log=lambda m: None)
    finally:
        ray.shutdown()
    assert _comparable_records(distributed) == _comparable_records(local)


def test_unknown_executor(grid, tmp_path):
    with pytest.raises(FairbenchError, match="Unknown executor 'rey'. Did you mean: ray?"):
        run_benchmark(load_grid(grid), tmp_path / "x", executor="rey")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# Job keys: what a job computes, not where its method sits in [[methods]]

ORDERED = """
[benchmark]
name = "order"
n_samples = 200
batch_size = 100
shard_size = 100
[model]
kind = "gaussian"
means = [[-0.5, 0.0], [0.5, 0.0]]
std = 0.5
[sampler]
scheduler = "ddim"
steps = 10
"""
METHODS = {
    "conditional": '[[methods]]\nname = "conditional"\n',
    "switching": '[[methods]]\nname = "attribute_switching"\ntau = 400\n',
    "searched": '[[methods]]\nname = "attribute_switching"\ntau = "reference"\nsearch_batch_size = 16\n',
    "mixing": '[[methods]]\nname = "embedding_mixing"\nweight = 0.5\n',
}


def _config(path: Path, *names: str) -> Path:
    path.write_text(ORDERED + "".join(METHODS[n] for n in names))
    return path


def test_reordering_the_methods_reuses_every_finished_job(tmp_path):
    out = tmp_path / "out"
    run_benchmark(load_grid(_config(tmp_path / "a.toml", "conditional", "switching", "searched")), out, log=lambda m: None)
    first = _comparable_records(out)
    files = {p: p.stat().st_mtime_ns for folder in ("shards", "searches") for p in (out / folder).rglob("*.*")}
    lines = []
    reordered = load_grid(_config(tmp_path / "b.toml", "searched", "mixing", "conditional", "switching"))
    run_benchmark(reordered, out, log=lines.append)
    computed = [line for line in lines if "reused" not in line]
    assert len(lines) == 4 and len(computed) == 1 and "embedding_mixing" in computed[0]
    assert {p: p.stat().st_mtime_ns for p in files} == files  # no sample or search was redone
    again = _comparable_records(out)
    for key, record in first.items():  # the same results; only the display order moved
        assert {k: v for k, v in again[key].items() if k != "position"} == {k: v for k, v in record.items() if k != "position"}
    assert [r["label"] for r in read_records(out)] == [m.display for m in reordered[0].methods]
    fresh = tmp_path / "fresh"
    run_benchmark(reordered, fresh, log=lambda m: None)
    assert _comparable_records(fresh) == again  # a resumed run's records are those of a fresh run


def test_the_same_method_under_two_labels_keeps_two_jobs(tmp_path):
    path = tmp_path / "twins.toml"
    path.write_text(ORDERED + '[[methods]]\nname = "conditional"\nlabel = "a"\n[[methods]]\nname = "conditional"\nlabel = "b"\n'
                    + METHODS["switching"])
    jobs = plan(load_grid(path))
    assert len({job.key for job in jobs}) == 3
    assert [job.spec().get("label") for job in jobs] == ["a", "b", None]  # the label only tells twins apart


def test_a_folder_keyed_by_method_position_is_refused_with_one_line(tmp_path, capsys):
    from fairbench.cli import main

    out = tmp_path / "old"
    run_benchmark(load_grid(_config(tmp_path / "a.toml", "conditional")), out, log=lambda m: None)
    (path,) = (out / "records").glob("*.json")
    old = json.loads(path.read_text())
    old["spec"]["method_index"] = 0  # how records were keyed before
    path.write_text(json.dumps(old))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()  # the first run's progress
    assert main(["run", str(tmp_path / "a.toml"), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error: ") and "place in [[methods]]" in err[0], err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
