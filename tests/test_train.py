"""Training: the loop, EMA, checkpoints (round trip and resume), the cache, `fairbench train`."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from fairbench.cli import main
from fairbench.classifiers import AttributeJudge, NoiseAwareClassifier
from fairbench.datasets import load_dataset
from fairbench.train import (
    GuidanceTraining,
    JudgeTraining,
    LabelledImages,
    UNetTraining,
    build_unet,
    cached_guidance,
    cached_judge,
    cached_unet,
    fit,
    load_checkpoint,
    save_checkpoint,
)

TINY_UNET = UNetTraining(block_out_channels=[8, 16], steps=4, batch_size=8, checkpoint_every=2)
TINY_JUDGE = JudgeTraining(width=8, feature_dim=16, steps=3, batch_size=8)
TINY_GUIDANCE = GuidanceTraining(width=8, steps=3, batch_size=8)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def digits():
    dataset = load_dataset({"name": "digits"})
    return {split: LabelledImages.from_dataset(dataset, split, "stroke", "digit") for split in ("train", "val")}


def regression_problem():
    """A tiny linear regression: the loss reads its batch from the step's generator."""
    torch.manual_seed(0)
    module = torch.nn.Linear(4, 1)
    truth = torch.tensor([[1.0, -2.0, 0.5, 3.0]])

    def batch_loss(model, generator):
        x = torch.randn(16, 4, generator=generator)
        return torch.nn.functional.mse_loss(model(x), x @ truth.T)

    return module, batch_loss


def test_training_reduces_the_loss(tmp_path):
    module, batch_loss = regression_problem()
    probe = torch.Generator().manual_seed(123)
    before = batch_loss(module, probe.clone_state()).item()
    trained = fit(module, batch_loss, steps=300, learning_rate=0.05, seed=0,
                  checkpoint_dir=tmp_path / "ckpt", checkpoint_every=100)
    assert batch_loss(trained, probe.clone_state()).item() < 0.01 * before


def test_ema_after_one_step_follows_its_formula(tmp_path):
    """decay after update 0 is min(d, 1/10): ema = 0.1 * theta_0 + 0.9 * theta_1."""
    module, batch_loss = regression_problem()
    initial = copy.deepcopy(module)
    ema = fit(module, batch_loss, steps=1, learning_rate=0.05, seed=0, ema_decay=0.999,
              checkpoint_dir=tmp_path / "ckpt", checkpoint_every=10)
    for averaged, first, current in zip(ema.parameters(), initial.parameters(), module.parameters()):
        torch.testing.assert_close(averaged, first + 0.9 * (current - first))
        assert not torch.equal(averaged, current)


def test_checkpoint_round_trip(tmp_path):
    unet = build_unet(TINY_UNET, (1, 8, 8), 2)
    ema = copy.deepcopy(unet)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    x = torch.randn(4, 1, 8, 8)
    loss = unet(x, torch.tensor([1, 2, 3, 4]), class_labels=torch.tensor([0, 1, 0, 1])).sample.square().mean()
    loss.backward()
    optimizer.step()
    save_checkpoint(tmp_path / "ckpt", 7, unet, ema, optimizer)
    assert not list((tmp_path / "ckpt").glob("*.pt")) and not list((tmp_path / "ckpt").glob("*.bin"))

    fresh, fresh_ema = build_unet(TINY_UNET, (1, 8, 8), 2), build_unet(TINY_UNET, (1, 8, 8), 2)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    assert load_checkpoint(tmp_path / "ckpt", fresh, fresh_ema, fresh_optimizer) == 7
    for name, tensor in unet.state_dict().items():
        assert torch.equal(tensor, fresh.state_dict()[name]), name
        assert torch.equal(ema.state_dict()[name], fresh_ema.state_dict()[name]), name
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    tupled = lambda groups: [{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()} for g in groups]  # noqa: E731
    assert tupled(saved["param_groups"]) == tupled(loaded["param_groups"])  # JSON turns tuples into lists
    for index, state in saved["state"].items():
        for key, value in state.items():
            assert torch.equal(value, loaded["state"][index][key]), (index, key)


def test_resumed_training_equals_uninterrupted_training(tmp_path, digits):
    """Train 4 steps straight vs 2 steps, stop, resume to 4: identical weights and EMA."""
    data = digits["train"]

    def train(steps: int, directory: Path):
        torch.manual_seed(0)
        unet = build_unet(TINY_UNET, (1, 8, 8), 2)
        abar = torch.linspace(0.99, 0.01, 1000)

        def batch_loss(model, generator):
            index = torch.randint(len(data.images), (8,), generator=generator)
            t = torch.randint(1000, (8,), generator=generator)
            eps = torch.randn(8, 1, 8, 8, generator=generator)
            a = abar[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * data.images[index] + (1 - a).sqrt() * eps
            return torch.nn.functional.mse_loss(model(x_t, t, class_labels=data.sensitive[index]).sample, eps)

        ema = fit(unet, batch_loss, steps=steps, learning_rate=1e-3, seed=5, ema_decay=0.99,
                  checkpoint_dir=directory, checkpoint_every=2)
        return unet, ema

    straight, straight_ema = train(4, tmp_path / "straight")
    train(2, tmp_path / "interrupted")
    resumed, resumed_ema = train(4, tmp_path / "interrupted")
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
        assert torch.equal(straight_ema.state_dict()[name], resumed_ema.state_dict()[name]), name


def test_unet_training_caches_and_reuses(digits, cache):
    first = cached_unet(digits["train"], TINY_UNET, device="cpu")
    folder = first.directory / "unet"
    assert first.trained_now and (folder / "config.json").is_file() and (folder / "scheduler_config.json").is_file()
    assert list(folder.glob("*.safetensors")) and first.directory.is_relative_to(cache)
    again = cached_unet(digits["train"], TINY_UNET, device="cpu")
    assert not again.trained_now and again.directory == first.directory and again.key == first.key
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, again.network.state_dict()[name]), name
    assert first.network.config.num_class_embeds == 2
    # A different recipe is a different artifact.
    other = cached_unet(digits["train"], dataclasses.replace(TINY_UNET, seed=1), device="cpu")
    assert other.trained_now and other.directory != first.directory
    assert not any(cache.rglob("checkpoint"))  # finished artifacts drop their checkpoints


def test_null_class_adds_one_class_embedding(digits):
    spec = UNetTraining(block_out_channels=[8, 16], steps=2, batch_size=8, null_class=True)
    trained = cached_unet(digits["train"], spec, device="cpu")
    assert trained.network.config.num_class_embeds == 3 and trained.metadata["null_class"] == 2


def test_classifiers_cache_and_report_held_out_accuracy(digits):
    judge = cached_judge(digits["train"], digits["val"], TINY_JUDGE, device="cpu")
    assert judge.trained_now and isinstance(judge.network, AttributeJudge)
    assert set(judge.metadata["val_accuracy"]) == {"sensitive", "target"}
    again = cached_judge(digits["train"], digits["val"], TINY_JUDGE, device="cpu")
    assert not again.trained_now and again.key == judge.key
    assert all(torch.equal(a, b) for a, b in zip(judge.network.state_dict().values(), again.network.state_dict().values()))
    schedule = {"num_train_timesteps": 1000, "beta_schedule": "linear"}
    guidance = cached_guidance(digits["train"], digits["val"], TINY_GUIDANCE, schedule, device="cpu")
    assert guidance.trained_now and isinstance(guidance.network, NoiseAwareClassifier)
    assert set(guidance.metadata["val_accuracy"]) == {"t=0", "t=250", "t=500", "t=750"}
    other = cached_guidance(digits["train"], digits["val"], TINY_GUIDANCE, schedule | {"num_train_timesteps": 500}, device="cpu")
    assert other.trained_now


def test_judge_learns_digits(digits):
    """A short training already reads digits far above chance (0.1) on held-out images."""
    spec = JudgeTraining(width=16, feature_dim=32, steps=150, batch_size=64)
    judge = cached_judge(digits["train"], digits["val"], spec, device="cpu")
    assert judge.metadata["val_accuracy"]["target"] > 0.6


def test_stratum_sampling_balances_the_biased_strata(digits):
    data = digits["train"]
    probabilities = data.stratum_probabilities()
    strata = data.sensitive * 10 + data.target
    mass = torch.zeros(20, dtype=torch.float64).index_add_(0, strata, probabilities)
    torch.testing.assert_close(mass, torch.full((20,), 1 / 20, dtype=torch.float64))


TINY_CONFIG = """
[benchmark]
name = "tiny-digits"
n_samples = 12
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

[[methods]]
name = "conditional"

[[methods]]
name = "attribute_switching"
tau = "reference"
search_batch_size = 2
"""


def test_train_command_then_run_reuses_the_cache(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CONFIG)
    assert main(["train", str(config), "--device", "cpu"]) == 0
    first = capsys.readouterr().out
    assert "unet_trained_now: True" in first and "judge_trained_now: True" in first
    assert main(["train", str(config), "--device", "cpu"]) == 0
    second = capsys.readouterr().out
    assert "unet_trained_now: False" in second and "guidance_trained_now: False" in second
    out = tmp_path / "results"
    assert main(["run", str(config), "--out", str(out), "--device", "cpu"]) == 0
    assert len(list((out / "records").glob("*.json"))) == 2
    figures = sorted((out / "figures").iterdir())
    names = [p.name for p in figures]
    assert len(figures) == 4 and "tau_search.png" in names and "pareto.svg" in names  # + one grid per method
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in figures if p.suffix == ".png")


def test_train_command_refuses_a_model_without_training(tmp_path, capsys):
    config = tmp_path / "gauss.toml"
    config.write_text('[benchmark]\nname = "g"\n[model]\nkind = "gaussian"\nmeans = [[0.0], [1.0]]\n'
                      '[[methods]]\nname = "conditional"\n')
    assert main(["train", str(config)]) == 2
    assert "nothing to train" in capsys.readouterr().err


def test_retraining_a_recipe_gives_the_same_weights_whatever_drew_from_the_global_generator(digits, tmp_path, monkeypatch):
    # Initial weights come from the recipe's seed: a retrain in another process state (here: a
    # different global generator state, another cache) reproduces the artifact bit for bit.
    first = cached_judge(digits["train"], digits["val"], TINY_JUDGE, device="cpu")
    torch.manual_seed(12345)
    torch.randn(17)
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "elsewhere"))
    again = cached_judge(digits["train"], digits["val"], TINY_JUDGE, device="cpu")
    assert again.trained_now and again.directory != first.directory
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, again.network.state_dict()[name]), name
    other_seed = cached_judge(digits["train"], digits["val"], dataclasses.replace(TINY_JUDGE, seed=1), device="cpu")
    assert not all(torch.equal(a, b) for a, b in zip(first.network.state_dict().values(), other_seed.network.state_dict().values()))
