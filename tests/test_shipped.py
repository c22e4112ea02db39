"""Shipped networks: looked up by recipe key, switched off by `fairbench train` and FAIRBENCH_NETWORKS."""

from pathlib import Path

import pytest

from fairbench.cache import artifact, recipe_key, recorded_artifacts, shipped_artifact, without_shipped
from fairbench.errors import FairbenchError

RECIPE = {"format": 1, "spec": {"steps": 3}, "data": "abc"}


def _ship(root, recipe):
    store = artifact("judge", recipe, root=root)
    store.finish({"val_accuracy": {"sensitive": 1.0}})
    return store


def test_shipped_artifact_is_found_by_its_recipe_key_only(tmp_path):
    store = _ship(tmp_path, RECIPE)
    found = shipped_artifact("judge", RECIPE, root=tmp_path)
    assert found is not None and found.key == recipe_key("judge", RECIPE) == store.key
    assert shipped_artifact("judge", RECIPE | {"data": "abd"}, root=tmp_path) is None  # other data
    assert shipped_artifact("unet", RECIPE, root=tmp_path) is None  # other kind


def test_incomplete_shipped_artifact_is_ignored(tmp_path):
    artifact("judge", RECIPE, root=tmp_path)  # created, never finished
    assert shipped_artifact("judge", RECIPE, root=tmp_path) is None


def test_training_and_the_environment_switch_shipped_networks_off(tmp_path, monkeypatch):
    _ship(tmp_path, RECIPE)
    with without_shipped():
        assert shipped_artifact("judge", RECIPE, root=tmp_path) is None
    assert shipped_artifact("judge", RECIPE, root=tmp_path) is not None
    monkeypatch.setenv("FAIRBENCH_NETWORKS", "cache")
    assert shipped_artifact("judge", RECIPE, root=tmp_path) is None
    monkeypatch.setenv("FAIRBENCH_NETWORKS", "nope")
    with pytest.raises(FairbenchError, match="FAIRBENCH_NETWORKS must be 'shipped' or 'cache', got 'nope'"):
        shipped_artifact("judge", RECIPE, root=tmp_path)


def test_recorder_sees_every_lookup(tmp_path):
    _ship(tmp_path, RECIPE)
    with recorded_artifacts() as used:
        shipped_artifact("judge", RECIPE, root=tmp_path)
        artifact("unet", RECIPE, root=tmp_path / "cache")
    assert [(recipe, found.kind) for recipe, found in used] == [(RECIPE, "judge"), (RECIPE, "unet")]


def test_every_shipped_artifact_is_named_by_the_recipe_that_made_it():
    import json

    from fairbench.cache import MARKER, SHIPPED_ROOT

    provenance = json.loads((SHIPPED_ROOT / "PROVENANCE.json").read_text(encoding="utf-8"))
    assert provenance["artifacts"]
    for entry in provenance["artifacts"]:
        assert recipe_key(entry["kind"], entry["recipe"]) == entry["key"]
        assert json.loads((SHIPPED_ROOT / entry["directory"] / MARKER).read_text(encoding="utf-8"))["key"] == entry["key"]
        assert list((SHIPPED_ROOT / entry["directory"]).rglob("*.safetensors"))
        assert not list((SHIPPED_ROOT / entry["directory"]).rglob("*.pt*")) and not list((SHIPPED_ROOT / entry["directory"]).rglob("*.bin"))


def test_the_default_benchmark_trains_nothing_with_the_shipped_networks(tmp_path, monkeypatch):
    from fairbench.config import load_config
    from fairbench.cli import DEFAULT_CONFIG

    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path))
    config = load_config(DEFAULT_CONFIG)
    with recorded_artifacts() as used:
        info = config.model_spec().prepare(device="cpu", dataset=config.dataset).info
    assert sorted(found.kind for _, found in used) == ["guidance", "judge", "unet"]
    assert not any(value for key, value in info.items() if key.endswith("trained_now"))
    assert not list(tmp_path.rglob("artifact.json"))  # nothing was trained into the cache


def test_a_small_run_of_the_shipped_networks_reproduces_its_stored_metrics(tmp_path, monkeypatch):
    # Stored by tools/shipped_regression.py. Count-based values (a classifier's or the judge's
    # decisions on 64 samples per group) may move by a decision or two on another CPU's float
    # rounding; probability-based ones only by rounding.
    import json

    from shipped_small import small_run

    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))  # the shipped networks, not a local cache
    stored = json.loads((Path(__file__).parent / "data" / "shipped_digits_small.json").read_text(encoding="utf-8"))
    measured = small_run()
    assert set(measured) == set(stored)
    for label, values in stored.items():
        for name, value in values.items():
            tolerance = {"fd": 1e-3, "fd_pooled": 1e-3, "kl_uniform": 1e-3}.get(name, 0.05)
            assert measured[label][name] == pytest.approx(value, abs=tolerance), (label, name)
    assert not list((tmp_path / "cache").rglob("artifact.json"))  # nothing trained
