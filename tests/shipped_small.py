"""A small run of the shipped default networks, shared by tests/test_shipped.py and
tools/shipped_regression.py (which stores its values)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fairbench.cli import DEFAULT_CONFIG
from fairbench.config import parse_config, read_toml
from fairbench.runner import run_benchmark

# Deterministic given the networks, the noise and the code (timing fields are not).
COMPARED = ("epsilon", "epsilon_linear", "fd", "fd_pooled", "kl_uniform", "target_gap", "utility_accuracy", "tau")


def small_run() -> dict[str, dict]:
    data = read_toml(DEFAULT_CONFIG)
    data["benchmark"] |= {"n_samples": 128, "seeds": [0], "batch_size": 128}
    data["sampler"] = {"scheduler": "ddim", "steps": 10}
    data["methods"] = [{"name": "conditional"}, {"name": "attribute_switching", "tau": 300}]
    data["metrics"] = {"bootstrap": 50, "epsilon_permutations": 50, "epsilon_subsamples": 2, "epsilon_repeats": 1}
    config = parse_config(data, source="shipped-small")
    with tempfile.TemporaryDirectory() as out:
        records = run_benchmark(config, Path(out), device="cpu", log=lambda message: None)
    return {record["label"]: record["metrics"] for record in records}
