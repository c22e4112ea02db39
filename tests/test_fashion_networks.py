"""The shipped Fashion-MNIST networks are usable, and retraining them gives the same quality.

Needs the real files (`apt-get install dataset-fashion-mnist`); skipped without them, so CI
does not need the package. The numbers are `fairbench.network_quality`'s (its docstring
defines them), measured on the 16,000 real held-out images (val and test) at 14x14, the
samples scored by the shipped judge.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fairbench.cache import SHIPPED_ROOT, without_shipped
from fairbench.classifiers import AttributeJudge, Judge, NoiseAwareClassifier
from fairbench.cli import main
from fairbench.config import load_config
from fairbench.datasets.fashion import FashionMNISTSpec
from fairbench.models.unet import labelled_splits
from fairbench.network_quality import held_out, network_quality, quality_differences
from fairbench.train import build_unet, initialised

CONFIG = Path(__file__).parents[1] / "baselines" / "fashion.toml"

# What "usable" means, fixed before the networks were trained (docs/networks.md): the judge
# reads category and shade of real held-out garments, the guidance classifier reads shade from
# clean inputs, and the generator's samples carry the requested shade and are, for the most
# part, garments the judge names with probability >= 0.9.
MINIMUMS = {
    "judge_target_accuracy": 0.85,
    "judge_sensitive_accuracy": 0.85,
    "guidance_accuracy_t0": 0.80,
    "sample_sensitive_agreement": 0.80,
    "sample_recognisable": 0.50,
}

# Slow: scoring 16,000 held-out images and two generators takes minutes of CPU.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(FashionMNISTSpec.default_root).is_dir(),
                                                   reason="dataset-fashion-mnist is not installed")]


@pytest.fixture(scope="module")
def fashion():
    config = load_config(CONFIG)
    shipped = config.model_spec().prepare(device="cpu", dataset=config.dataset)
    if not str(shipped.info["unet"]).startswith(str(SHIPPED_ROOT)) or shipped.info["unet_trained_now"]:
        pytest.fail("the Fashion-MNIST networks are not shipped (fairbench/networks)")
    return config, held_out(labelled_splits(config.dataset)), shipped


def below(numbers: dict[str, float]) -> list[str]:
    return [name for name, minimum in MINIMUMS.items() if not numbers[name] >= minimum]


@pytest.fixture(scope="module")
def scored(fashion):
    """The shipped set and randomly initialised networks of the same architectures (the planted
    failures), 200 samples at 20 DDIM steps each (the published numbers, docs/networks.md, use
    500 samples at 50 steps), both scored by the shipped judge."""
    config, data, shipped = fashion
    good = network_quality(shipped, data, n_samples=200, steps=20)
    unet = initialised(1, lambda: build_unet(config.model_spec().unet, (1, 14, 14), 3)).eval()
    judge = initialised(1, lambda: AttributeJudge(**shipped.judge.network.config)).eval()
    guidance = initialised(1, lambda: NoiseAwareClassifier(**shipped.guidance.config)).eval()
    random = dataclasses.replace(shipped, unet=unet, judge=Judge(judge, "random"), guidance=guidance)
    bad = network_quality(random, data, reference=shipped.judge, n_samples=200, steps=20)
    return good, bad


def test_shipped_fashion_networks_beat_random_ones(scored):
    # Margins: three standard errors of a fraction near one half at 200 samples (0.035 each).
    good, bad = scored
    for name in ("judge_target_accuracy", "judge_sensitive_accuracy", "guidance_accuracy_t0"):
        assert good[name] >= MINIMUMS[name] > bad[name], name
    # Recognisability is not among them: at 200 samples and 20 steps the judge names a random
    # generator's noise as a garment with probability >= 0.9 about one time in six, so the
    # margin is set by the minimums test below, at the published settings.
    assert good["sample_sensitive_agreement"] > bad["sample_sensitive_agreement"] + 0.1
    assert good["sample_fd"] < bad["sample_fd"]
    assert set(below(bad)) == set(MINIMUMS)


@pytest.mark.parametrize("name", ["fashion.toml", "fashion-bias05.toml"])
def test_shipped_fashion_networks_meet_the_usable_minimums(name):
    """At the published settings (`network_quality`'s defaults: 500 samples, DDIM 50, seed 0;
    docs/networks.md). The two generators clear sample_recognisable and
    sample_sensitive_agreement by less than one binomial standard error (0.022 at 500 samples):
    a retrain may land on either side (the retrain test compares a retrain with these numbers
    within `RETRAIN_TOLERANCES`, not with the minimums)."""
    config = load_config(CONFIG.with_name(name))
    shipped = config.model_spec().prepare(device="cpu", dataset=config.dataset)
    numbers = network_quality(shipped, held_out(labelled_splits(config.dataset)))
    assert below(numbers) == [], numbers


def test_retraining_the_fashion_config_gives_networks_of_the_same_quality(fashion, tmp_path, monkeypatch, capsys):
    """`fairbench train baselines/fashion.toml` into an empty cache, compared with the shipped
    set by `quality_differences` (500 samples, DDIM 50 steps, the shipped judge scoring both).

    The tolerances are the digits ones (`RETRAIN_TOLERANCES`), not calibrated by Fashion-MNIST
    retrains; with 16,000 held-out images instead of 540 the judge and guidance accuracies'
    own sampling error is far below them. About 35 minutes of one free CPU core for the training (8000 generator steps at about 0.22 s).
    """
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("FAIRBENCH_NETWORKS", "shipped")
    assert main(["train", str(CONFIG), "--device", "cpu"]) == 0
    config, data, shipped = fashion
    with without_shipped():
        retrained = config.model_spec().prepare(device="cpu", dataset=config.dataset)
    assert not any(value for key, value in retrained.info.items() if key.endswith("trained_now"))
    reference = network_quality(shipped, data, reference=shipped.judge)
    candidate = network_quality(retrained, data, reference=shipped.judge)
    with capsys.disabled():
        print("\nshipped vs retrained: " + json.dumps({"shipped": reference, "retrained": candidate}))
    assert quality_differences(reference, candidate) == []
