"""Benchmark configs: TOML files parsed into frozen dataclasses that reject unknown keys.

A config has ``[benchmark]``, ``[model]``, optional ``[dataset]``, ``[sampler]``,
``[[methods]]`` and optional ``[metrics]``. Model kinds and methods each own their keys;
everything a run depends on ends up in the record's spec.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from .errors import FairbenchError, suggest

# ---------------------------------------------------------------------------------------------
# Generic, strict parsing of a table into a frozen dataclass.


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or hint is dict:
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _convert(value: Any, hint, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise FairbenchError(f"{where} = {value!r} is not allowed.{suggest(str(value), [str(c) for c in choices])}")
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except FairbenchError:
                continue
        raise FairbenchError(f"{where} must be {_type_name(hint)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise FairbenchError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        items = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise FairbenchError(f"{where} must be a table, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise FairbenchError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FairbenchError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FairbenchError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise FairbenchError(f"{where} must be a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return parse_table(hint, value, where)
    raise TypeError(f"unsupported config type {hint!r}")


def parse_table(cls, data: Any, where: str):
    """Build dataclass `cls` from a TOML table, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise FairbenchError(f"[{where}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in known:
            raise FairbenchError(f"Unknown key {where}.{key!r}.{suggest(key, known)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FairbenchError(f"Missing key {where}.{f.name!r}")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(where)
    return obj


def parse_variant(table: dict, registry: dict[str, type], *, key: str, section: str, kind: str):
    """Parse a table whose `key` names its spec class in `registry` (``[model] kind``, ``[dataset] name``)."""
    from .errors import lookup

    choice = table.get(key)
    if choice is None:
        raise FairbenchError(f"[{section}] needs a '{key}'. Valid: {', '.join(sorted(registry))}.")
    return parse_table(lookup(registry, choice, kind), table, section)


def import_optional(*modules: str) -> None:
    """Import modules that register themselves, tolerating only their own absence."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def _positive(value: int, where: str) -> None:
    if value <= 0:
        raise FairbenchError(f"{where} must be positive, got {value}")


# ---------------------------------------------------------------------------------------------
# The config sections.


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    n_samples: int = 2000
    seeds: list[int] = field(default_factory=lambda: [0])
    # Execution details: results do not depend on them.
    batch_size: int = 1000
    shard_size: int = 1000  # samples per resumable shard

    def validate(self, where: str) -> None:
        _positive(self.n_samples, f"{where}.n_samples")
        _positive(self.batch_size, f"{where}.batch_size")
        _positive(self.shard_size, f"{where}.shard_size")
        if not self.seeds:
            raise FairbenchError(f"{where}.seeds must list at least one seed")
        if any(s < 0 for s in self.seeds):
            raise FairbenchError(f"{where}.seeds must be non-negative, got {self.seeds}")


@dataclass(frozen=True)
class SamplerSpec:
    scheduler: str = "ddim"
    steps: int = 50

    def validate(self, where: str) -> None:
        from .schedulers import SCHEDULERS
        from .errors import lookup

        lookup(SCHEDULERS, self.scheduler, "scheduler")
        _positive(self.steps, f"{where}.steps")


@dataclass(frozen=True)
class MethodSpec:
    """One ``[[methods]]`` entry. Keys other than `name` and `label` belong to the method."""

    name: str
    label: str | None = None
    tau: int | float | str | None = None
    weight: float | None = None
    scale: float | None = None
    search_batch_size: int = 256

    def validate(self, where: str) -> None:
        from .methods import METHODS
        from .errors import lookup

        lookup(METHODS, self.name, "method")
        allowed = {
            "conditional": set(),
            "attribute_switching": {"tau"},
            "embedding_mixing": {"weight"},
            "classifier_guidance": {"scale"},
        }[self.name]
        for key in ("tau", "weight", "scale"):
            if getattr(self, key) is not None and key not in allowed:
                raise FairbenchError(f"{where}.{key} does not apply to method {self.name!r}")
        if self.name == "attribute_switching":
            if self.tau is None:
                raise FairbenchError(f"{where}.tau is required for attribute_switching (an integer, 'reference' or 'direct')")
            if isinstance(self.tau, str) and self.tau not in ("reference", "direct"):
                raise FairbenchError(f"{where}.tau = {self.tau!r} is not a search.{suggest(self.tau, ['reference', 'direct'])}")
        if self.weight is not None and not 0.0 <= self.weight <= 1.0:
            raise FairbenchError(f"{where}.weight must be in [0, 1], got {self.weight}")
        if self.scale is not None and self.scale < 0:
            raise FairbenchError(f"{where}.scale must be non-negative, got {self.scale}")
        _positive(self.search_batch_size, f"{where}.search_batch_size")

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        params = {k: getattr(self, k) for k in ("tau", "weight", "scale") if getattr(self, k) is not None}
        inner = ", ".join(f"{k}={v}" for k, v in params.items())
        return f"{self.name}({inner})" if inner else self.name


@dataclass(frozen=True)
class MetricsSpec:
    """``[metrics]``: settings of the measurements (see `fairbench.metrics.suite.SuiteOptions`)."""

    epsilon_folds: int = 5
    epsilon_learners: list[str] = field(default_factory=lambda: ["logistic", "svm_rbf"])  # fairbench.metrics.fairness.LEARNERS
    epsilon_repeats: int = 3
    epsilon_subsamples: int = 8  # refitted half-samples behind epsilon's interval (0: none)
    epsilon_permutations: int = 1000
    confidence: float = 0.95
    bootstrap: int = 1000
    fid_features: str = "auto"
    fid_backend: str = "clean-fid"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    utility_target: str = "target"
    feature_batch_size: int = 256

    def validate(self, where: str) -> None:
        from .metrics.suite import SuiteOptions

        SuiteOptions.from_config(self).validate(where)
        if self.epsilon_folds < 3:
            raise FairbenchError(f"{where}.epsilon_folds must be at least 3, got {self.epsilon_folds}")
        _positive(self.epsilon_repeats, f"{where}.epsilon_repeats")
        if self.epsilon_subsamples < 0:
            raise FairbenchError(f"{where}.epsilon_subsamples must be non-negative, got {self.epsilon_subsamples}")
        if self.epsilon_permutations < 0:
            raise FairbenchError(f"{where}.epsilon_permutations must be non-negative, got {self.epsilon_permutations}")
        if not 0.5 <= self.confidence < 1.0:
            raise FairbenchError(f"{where}.confidence must be in [0.5, 1), got {self.confidence}")
        _positive(self.bootstrap, f"{where}.bootstrap")


@dataclass(frozen=True)
class Config:
    benchmark: BenchmarkSpec
    model: dict
    sampler: SamplerSpec
    methods: list[MethodSpec]
    dataset: dict | None = None
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    source: str = ""  # where the config came from (not part of any spec)

    def model_spec(self):
        from .models import model_spec

        return model_spec(self.model)


SECTIONS = ("benchmark", "model", "models", "dataset", "datasets", "sampler", "methods", "metrics")
SWEEPABLE = ("tau", "weight", "scale")


def _table(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise FairbenchError(f"[{where}] must be a table, got {value!r}")
    return dict(value)


def _expand_methods(methods: Any, source: str) -> list[dict]:
    """Expand parameter sweeps: ``tau = [650, 700]`` in one entry gives one method per value."""
    if not isinstance(methods, list) or not methods:
        raise FairbenchError(f"{source}: [[methods]] must list at least one method")
    expanded = []
    for i, entry in enumerate(methods):
        entry = _table(entry, f"methods[{i}]")
        sweeps = {k: v for k, v in entry.items() if k in SWEEPABLE and isinstance(v, list)}
        if not sweeps:
            expanded.append(entry)
            continue
        for key, values in sweeps.items():
            if not values:
                raise FairbenchError(f"methods[{i}].{key} sweeps over an empty list")
        keys = list(sweeps)
        for combo in itertools.product(*(sweeps[k] for k in keys)):
            item = dict(entry) | dict(zip(keys, combo))
            if "label" in entry:
                item["label"] = f"{entry['label']}[" + ", ".join(f"{k}={v}" for k, v in zip(keys, combo)) + "]"
            expanded.append(item)
    return expanded


def _variants(data: dict, single: str, plural: str, source: str) -> list[tuple[str | None, dict | None]]:
    """(label, table) for each entry of ``[single]`` or ``[[plural]]``."""
    if single in data and plural in data:
        raise FairbenchError(f"{source}: use either [{single}] or [[{plural}]], not both")
    if plural in data:
        entries = data[plural]
        if not isinstance(entries, list) or not entries:
            raise FairbenchError(f"{source}: [[{plural}]] must list at least one table")
        out = []
        for i, entry in enumerate(entries):
            entry = _table(entry, f"{plural}[{i}]")
            label = entry.pop("label", None)
            if label is None:
                label = str(entry.get("name") or entry.get("path") or entry.get("kind") or i)
            out.append((str(label), entry))
        labels = [label for label, _ in out]
        if len(set(labels)) != len(labels):
            raise FairbenchError(f"{source}: [[{plural}]] entries need distinct 'label's, got {labels}")
        return out
    if single in data:
        return [(None, _table(data[single], single))]
    return [(None, None)]


def parse_grid(data: dict, *, source: str = "<config>") -> list[Config]:
    """A benchmark grid: models x datasets x methods (with sweeps) x seeds, one Config per cell.

    ``[[models]]`` / ``[[datasets]]`` (each with an optional ``label``) list several; a cell's
    benchmark name is ``name/model-label/dataset-label`` for the parts that vary.
    """
    if not isinstance(data, dict):
        raise FairbenchError(f"{source} is not a table")
    for key in data:
        if key not in SECTIONS:
            raise FairbenchError(f"Unknown section [{key}] in {source}.{suggest(key, SECTIONS)}")
    if "model" not in data and "models" not in data:
        raise FairbenchError(f"{source} has no [model] section")
    configs = []
    for model_label, model in _variants(data, "model", "models", source):
        for dataset_label, dataset in _variants(data, "dataset", "datasets", source):
            cell = {k: v for k, v in data.items() if k not in ("models", "datasets")}
            cell["model"] = model
            if dataset is not None:
                cell["dataset"] = dataset
            suffix = "".join(f"/{label}" for label in (model_label, dataset_label) if label is not None)
            if suffix and isinstance(cell.get("benchmark"), dict) and "name" in cell["benchmark"]:
                cell["benchmark"] = dict(cell["benchmark"], name=cell["benchmark"]["name"] + suffix)
            configs.append(parse_config(cell, source=source))
    return configs


def parse_config(data: dict, *, source: str = "<config>") -> Config:
    for key in data:
        if key not in SECTIONS:
            raise FairbenchError(f"Unknown section [{key}] in {source}.{suggest(key, SECTIONS)}")
        if key in ("models", "datasets"):
            raise FairbenchError(f"{source} is a grid ([[{key}]]); run it with `fairbench run`")
    for key in ("benchmark", "model", "methods"):
        if key not in data:
            raise FairbenchError(f"{source} has no [{key}] section")
    methods = _expand_methods(data["methods"], source)
    config = Config(
        benchmark=parse_table(BenchmarkSpec, data["benchmark"], "benchmark"),
        model=_table(data["model"], "model"),
        sampler=parse_table(SamplerSpec, data.get("sampler", {}), "sampler"),
        methods=[parse_table(MethodSpec, m, f"methods[{i}]") for i, m in enumerate(methods)],
        dataset=_table(data["dataset"], "dataset") if "dataset" in data else None,
        metrics=parse_table(MetricsSpec, data.get("metrics", {}), "metrics"),
        source=source,
    )
    labels = [m.display for m in config.methods]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise FairbenchError(f"{source}: methods with the same label {duplicates[0]!r}; give each a distinct 'label'")
    model = config.model_spec()  # validate the model table now, before any work
    if hasattr(model, "num_train_timesteps"):
        from .runner import validate_methods

        validate_methods(config, model.num_train_timesteps)
    return config


def load_config(path: str | Path) -> Config:
    return parse_config(read_toml(path), source=str(path))


def load_grid(path: str | Path) -> list[Config]:
    return parse_grid(read_toml(path), source=str(path))


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FairbenchError(f"config file {str(path)!r} does not exist")
    if path.is_dir():
        raise FairbenchError(f"config {str(path)!r} is a directory, not a TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FairbenchError(f"cannot read config {str(path)!r}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FairbenchError(f"{str(path)!r} is not valid TOML: {exc}") from None
    return data
