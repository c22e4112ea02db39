"""Progress of long stages: plain lines with an estimate of what remains when stderr is not a terminal."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from fairbench.progress import LogProgress, progress
from fairbench.train import fit


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_one_line_per_tenth_with_the_mean_rate_estimate(capsys):
    clock = Clock()
    bar = LogProgress(100, "sampling x", unit="sample", clock=clock, after_s=0.0, interval_s=1e9)
    for _ in range(100):
        clock.now += 0.5
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    # the first line once the stage proves long (after_s), then 10%, ..., 90%, then the closing line
    assert len(lines) == 11
    assert lines[0] == "fairbench: sampling x: 1/100 samples (1%), 0.5s elapsed, about 49.5s left"
    assert lines[2] == "fairbench: sampling x: 20/100 samples (20%), 10.0s elapsed, about 40.0s left"
    assert lines[-1] == "fairbench: sampling x: 100/100 samples (100%), 50.0s elapsed, done"


def test_resumed_work_is_left_out_of_the_rate():
    clock = Clock()
    bar = LogProgress(100, "training", initial=50, clock=clock, after_s=0.0)
    clock.now += 10.0
    bar.update(10)  # 10 steps in 10 s, 40 to go
    assert bar.line().endswith("60/100 steps (60%), 10.0s elapsed, about 40.0s left")


def test_a_stalled_stage_still_reports_every_interval(capsys):
    clock = Clock()
    bar = LogProgress(1000, "measuring", clock=clock, after_s=0.0, interval_s=30.0)
    clock.now += 31.0
    bar.update(1)  # far from the next tenth, but 31 s since the last line
    clock.now += 5.0
    bar.update(1)  # neither
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_quick_stage_writes_nothing(capsys):
    clock = Clock()
    bar = LogProgress(10, "quick", clock=clock, after_s=2.0)
    for _ in range(10):
        clock.now += 0.1
        bar.update(1)
    bar.close()
    assert capsys.readouterr().err == ""


def test_progress_in_a_log_is_lines_and_on_a_terminal_a_live_bar(monkeypatch):
    assert isinstance(progress(5, "x"), LogProgress)  # pytest's captured stderr is no terminal

    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            pass

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not isinstance(progress(5, "x"), LogProgress)


def test_training_reports_progress_with_its_loss(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FAIRBENCH_PROGRESS_AFTER_S", "0")
    module = torch.nn.Linear(2, 1)
    x = torch.randn(64, 2)

    def batch_loss(model, generator):
        return ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()

    fit(module, batch_loss, steps=20, learning_rate=1e-2, seed=0, checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=100, desc="training net")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("fairbench: training net: 1/20 steps (5%)") and "left" in lines[0]
    assert len(lines) == 11 and "loss=" in lines[1]  # + one line per tenth, the last closing
    assert lines[-1].startswith("fairbench: training net: 20/20 steps (100%)") and lines[-1].endswith("done")


TINY_GAUSSIAN = """
[benchmark]
name = "tiny-gaussian"
n_samples = 40
batch_size = 8
[model]
kind = "gaussian"
means = [[-1.0, 0.0], [1.0, 0.0]]
n_real = 40
[sampler]
steps = 5
[metrics]
epsilon_folds = 3
bootstrap = 20
kid_subsets = 2
kid_subset_size = 10
[[methods]]
name = "conditional"
[[methods]]
name = "attribute_switching"
tau = "direct"
search_batch_size = 4
"""


def test_a_run_without_a_terminal_reports_every_stage_with_an_estimate(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_GAUSSIAN)
    env = os.environ | {"FAIRBENCH_PROGRESS_AFTER_S": "0", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "fairbench", "run", str(config), "--out", str(tmp_path / "out"), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    for stage in ("sampling conditional", "tau search (direct)", "sampling attribute_switching(tau=direct)",
                  "measuring", "benchmark"):
        lines = [line for line in err if line.startswith(f"fairbench: {stage}: ")]
        assert lines, f"no progress for {stage}:\n{done.stderr}"
        assert lines[-1].endswith("done")
    assert any(line.startswith("fairbench: sampling conditional: ") and "left" in line for line in err)
    assert "fairbench: benchmark: 1/2 jobs (50%)" in done.stderr
