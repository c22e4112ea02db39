"""Benchmark configs: TOML files parsed into frozen dataclasses that reject unknown keys.

A config has ``[benchmark]``, ``[model]``, optional ``[dataset]``, ``[sampler]``,
``[[methods]]`` and optional ``[metrics]``. Model kinds and methods each own their keys;
everything a run depends on ends up in the record's spec.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FairbenchError, lookup, suggest
from .methods import METHODS, Method, method_class
from .datasets import dataset_spec
from .metrics.suite import SuiteOptions
from .models import model_spec
from .schedulers import CLIPPING_SCHEDULERS, SCHEDULERS
from .sequential import SequentialSamples
from .tau_search import CYCLIC_SEARCHES, SEARCHES
from .tables import parse_table, positive

# ---------------------------------------------------------------------------------------------
# The config sections.


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    # a number, or a table: sample in rounds until epsilon's interval is narrow (fairbench.sequential)
    n_samples: int | SequentialSamples = 2000
    seeds: list[int] = field(default_factory=lambda: [0])
    # Execution details: results do not depend on them.
    batch_size: int = 1000
    shard_size: int = 1000  # samples per resumable shard

    def validate(self, where: str) -> None:
        if isinstance(self.n_samples, int):
            positive(self.n_samples, f"{where}.n_samples")
        positive(self.batch_size, f"{where}.batch_size")
        positive(self.shard_size, f"{where}.shard_size")
        if not self.seeds:
            raise FairbenchError(f"{where}.seeds must list at least one seed")
        if any(s < 0 for s in self.seeds):
            raise FairbenchError(f"{where}.seeds must be non-negative, got {self.seeds}")

    @property
    def sequential(self) -> SequentialSamples | None:
        return self.n_samples if isinstance(self.n_samples, SequentialSamples) else None


@dataclass(frozen=True)
class SamplerSpec:
    scheduler: str = "ddim"
    steps: int = 50
    # Clamp the predicted x0 to [-1, 1] at every step (ddim, ddpm); None: the model kind's default.
    clip_sample: bool | None = None

    def validate(self, where: str) -> None:
        lookup(SCHEDULERS, self.scheduler, "scheduler")
        positive(self.steps, f"{where}.steps")
        if self.clip_sample and self.scheduler not in CLIPPING_SCHEDULERS:
            raise FairbenchError(
                f"{where}.clip_sample applies to the {' and '.join(CLIPPING_SCHEDULERS)} schedulers, not {self.scheduler!r}"
            )


@dataclass(frozen=True)
class MethodSpec:
    """One ``[[methods]]`` entry: `name`, an optional `label`, and the keys that belong to the method.

    `params` holds the keys the table gave (type-checked); the method's class supplies the
    defaults and the checks (`fairbench.methods.Method`).
    """

    name: str
    label: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def method_class(self) -> type[Method]:
        return method_class(self.name)

    def options(self):
        """The method's ``Params``: the given keys over the method's defaults."""
        return parse_table(self.method_class.Params, dict(self.params), "method")

    def record(self) -> dict[str, Any]:
        """The method's part of a job's spec (and hence of its key): its parameters, defaults filled in."""
        return {"name": self.name} | self.method_class.recorded(self.options())

    def table(self) -> dict[str, Any]:
        """The ``[[methods]]`` table this spec parses from."""
        return {"name": self.name} | ({"label": self.label} if self.label is not None else {}) | dict(self.params)

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        shown = {k: v for k, v in self.params.items() if k in self.method_class.sweepable}
        inner = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"{self.name}({inner})" if inner else self.name


def parse_method(table: Any, where: str) -> MethodSpec:
    """A ``[[methods]]`` table: `name` picks the method class, whose ``Params`` own the other keys."""
    if not isinstance(table, dict):
        raise FairbenchError(f"[{where}] must be a table, got {table!r}")
    table = dict(table)
    name, label = table.pop("name", None), table.pop("label", None)
    if name is None:
        raise FairbenchError(f"{where} needs a 'name'. Valid: {', '.join(sorted(METHODS))}.")
    if not isinstance(name, str):
        raise FairbenchError(f"{where}.name must be a string, got {name!r}")
    if label is not None and not isinstance(label, str):
        raise FairbenchError(f"{where}.label must be a string, got {label!r}")
    cls = method_class(name)
    own = [f.name for f in dataclasses.fields(cls.Params)]
    for key in table:
        if key in own:
            continue
        if any(key in [f.name for f in dataclasses.fields(other.Params)] for other in METHODS.values()):
            raise FairbenchError(f"{where}.{key} does not apply to method {name!r}")
        others = sorted({f.name for other in METHODS.values() for f in dataclasses.fields(other.Params)})
        raise FairbenchError(f"Unknown key {where}.{key!r} for method {name!r}.{suggest(key, own or others)}")
    params = parse_table(cls.Params, table, where)
    for f in dataclasses.fields(cls.Params):  # a string that names a tau search must name one
        value = getattr(params, f.name)
        searches = CYCLIC_SEARCHES if f.metadata.get("names_a_search") == "cyclic" else SEARCHES
        if f.metadata.get("names_a_search") and isinstance(value, str) and value not in searches:
            raise FairbenchError(f"{where}.{f.name} = {value!r} is not a search.{suggest(value, list(searches))}")
    given = {key: getattr(params, key) for key in table}
    return MethodSpec(name=name, label=label, params=given)


# ``[metrics]``: the measurement settings, which the metrics package owns and checks.
MetricsSpec = SuiteOptions


@dataclass(frozen=True)
class Config:
    benchmark: BenchmarkSpec
    model: dict
    sampler: SamplerSpec
    methods: list[MethodSpec]
    dataset: dict | None = None
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    source: str = ""  # where the config came from (not part of any spec)

    def clip_sample(self) -> bool:
        """`[sampler].clip_sample`, or the model kind's default: on for image kinds in [-1, 1]
        (``clip_sample_default`` on their spec class) where the scheduler has the option."""
        if self.sampler.clip_sample is not None:
            return self.sampler.clip_sample
        return self.model_spec().clip_sample_default and self.sampler.scheduler in CLIPPING_SCHEDULERS

    def model_spec(self):
        return model_spec(self.model)

    def check_methods(self, num_train_timesteps: int) -> None:
        """Refuse method parameters the model rules out (tau beyond T) before any work."""
        for i, spec in enumerate(self.methods):
            spec.method_class.check_model(spec.options(), num_train_timesteps, f"methods[{i}]")


SECTIONS = ("benchmark", "model", "models", "dataset", "datasets", "sampler", "methods", "metrics")


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
        sweepable = method_class(entry["name"]).sweepable if isinstance(entry.get("name"), str) else ()
        sweeps = {k: v for k, v in entry.items() if k in sweepable and isinstance(v, list)}
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
        methods=[parse_method(m, f"methods[{i}]") for i, m in enumerate(methods)],
        dataset=_table(data["dataset"], "dataset") if "dataset" in data else None,
        metrics=parse_table(MetricsSpec, data.get("metrics", {}), "metrics"),
        source=source,
    )
    labels = [m.display for m in config.methods]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise FairbenchError(f"{source}: methods with the same label {duplicates[0]!r}; give each a distinct 'label'")
    model = config.model_spec()  # validate the model and dataset tables now, before any work
    if config.dataset is not None:
        dataset_spec(config.dataset)
        if not model.takes_dataset:
            raise FairbenchError(f"{source}: the {model.kind} model kind takes no [dataset]")
    if model.known_train_timesteps() is not None:
        config.check_methods(model.known_train_timesteps())
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
