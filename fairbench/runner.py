"""The harness: run every method of a config over the same seeded noise, write records.

The device is chosen here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import Config, MethodSpec
from .errors import FairbenchError
from .figures import RunFigures
from .leaderboard import write_leaderboard
from .methods import METHODS, ClassifierGuidance, resolve_tau
from .metrics.fairness import epsilon_fairness
from .models import Setup
from .records import make_record, provenance, write_record
from .sampling import sample
from .tau_search import TauSearchResult, search_tau


def choose_device(requested: str | None = None) -> str:
    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise FairbenchError(f"device {requested!r} requested but CUDA is not available")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise FairbenchError(f"Unknown device {requested!r}. Valid: auto, cpu, cuda, cuda:N.")
    return requested


def requested_values(n: int, k: int) -> torch.Tensor:
    """Sample i is requested for value ``i mod k``: balanced groups, paired noise across methods."""
    return torch.arange(n) % k


def run_tau_search(config: Config, setup: Setup, spec: MethodSpec, *, seed: int, device: str) -> TauSearchResult:
    return search_tau(
        spec.tau,
        setup.model,
        scheduler_name=config.sampler.scheduler,
        steps=config.sampler.steps,
        seed=seed,
        batch_size=spec.search_batch_size,
        device=device,
        **({"features": setup.extras["balance_features"]} if spec.tau == "direct" and "balance_features" in setup.extras else {}),
    )


def build_method(spec: MethodSpec, setup: Setup, tau: int | None):
    cls = METHODS[spec.name]
    if cls is ClassifierGuidance:
        if setup.guidance is None:
            raise FairbenchError("classifier_guidance needs a guidance classifier, and this model has none")
        return ClassifierGuidance(scale=1.0 if spec.scale is None else spec.scale, classifier=setup.guidance)
    if spec.name == "attribute_switching":
        return cls(tau=tau)
    if spec.name == "embedding_mixing":
        return cls(weight=0.5 if spec.weight is None else spec.weight)
    return cls()


def method_spec_dict(spec: MethodSpec, method) -> dict:
    out = {"name": spec.name, **method.params()}
    if spec.name == "attribute_switching":
        out["tau_source"] = spec.tau if isinstance(spec.tau, str) else "given"
        if isinstance(spec.tau, str):
            out["search_batch_size"] = spec.search_batch_size
    return out


def run_cell(config: Config, setup: Setup, spec: MethodSpec, *, index: int, seed: int, device: str, on_samples=None) -> dict:
    """One (method, seed) cell: resolve tau, sample, measure, return the record."""
    model = setup.model
    T = model.num_train_timesteps
    search = None
    tau = None
    if spec.name == "attribute_switching":
        if isinstance(spec.tau, str):
            search = run_tau_search(config, setup, spec, seed=seed, device=device)
            tau = search.tau
        else:
            tau = resolve_tau(spec.tau, T)
    method = build_method(spec, setup, tau)
    n = config.benchmark.n_samples
    requested = requested_values(n, model.num_attributes)
    bar = tqdm(total=n, desc=f"sampling {spec.display}", unit="sample", leave=False, disable=None)
    out = (setup.sample or sample)(
        model, method, requested,
        scheduler_name=config.sampler.scheduler, steps=config.sampler.steps, seed=seed,
        batch_size=config.benchmark.batch_size, device=device, progress=bar.update,
    )
    bar.close()
    if on_samples is not None:
        on_samples(spec.display, seed, out, search)
    features = setup.features(out.samples)
    estimate = epsilon_fairness(
        features.detach().cpu().numpy(), requested.numpy(),
        folds=config.metrics.epsilon_folds, confidence=config.metrics.confidence,
        bootstrap=config.metrics.bootstrap, seed=seed,
    )
    metrics = {
        "epsilon": estimate.value,
        "epsilon_ci": list(estimate.interval),
        "nfe_per_sample": out.nfe / n,
        "wall_s": out.wall_s,
        "samples_per_s": n / out.wall_s if out.wall_s > 0 else None,
    }
    if tau is not None:
        metrics["tau"] = tau
    if search is not None:
        metrics["tau_search_nfe"] = search.nfe
        metrics["tau_search_s"] = search.wall_s
    if setup.exact_metrics is not None:
        metrics.update(setup.exact_metrics(method=method, scheduler_name=config.sampler.scheduler, steps=config.sampler.steps))
    spec_dict = {
        "benchmark": config.benchmark.name,
        "model": config.model,
        "dataset": config.dataset,
        "sampler": dataclasses.asdict(config.sampler),
        "method": method_spec_dict(spec, method),
        "method_index": index,
        "n_samples": n,
        "seed": seed,
        "metrics": dataclasses.asdict(config.metrics) | {"epsilon_features": setup.feature_name},
        "requested": "sample i requests value i mod k",
        "final": "requested" if spec.name != "attribute_switching" else "target of the switch: (requested + 1) mod k",
    }
    extra = {}
    if search is not None:
        extra["tau_search"] = search.as_json() | {"wall_s": search.wall_s}
    return make_record(
        spec=spec_dict, label=spec.display, metrics=metrics,
        provenance=provenance(device=device, seed=seed, batch_size=config.benchmark.batch_size), extra=extra,
    )


def run_benchmark(config: Config, out_dir: Path, *, device: str = "cpu", log=None) -> list[Path]:
    log = log or (lambda message: print(message, file=sys.stderr))
    prepare_output(out_dir)
    setup = config.model_spec().build(device=device, dataset=config.dataset)
    figures = RunFigures(setup.model.attribute_names, config.benchmark.seeds[0])
    paths = []
    for seed in config.benchmark.seeds:
        for index, spec in enumerate(config.methods):
            start = time.perf_counter()
            record = run_cell(config, setup, spec, index=index, seed=seed, device=device, on_samples=figures.add)
            paths.append(write_record(out_dir, record))
            m = record["metrics"]
            log(f"{spec.display} seed={seed}: epsilon={m['epsilon']:.3f} "
                f"[{m['epsilon_ci'][0]:.3f}, {m['epsilon_ci'][1]:.3f}] ({time.perf_counter() - start:.1f}s)")
    write_leaderboard(out_dir)
    figures.write(out_dir)
    return paths


def prepare_output(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FairbenchError(f"output directory {str(out_dir)!r} exists and is not a directory")
    try:
        (out_dir / "records").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FairbenchError(f"cannot create output directory {str(out_dir)!r}: {exc.strerror}") from None
