"""The harness: plan a grid into content-addressed jobs, run them resumably, write records.

A job is one (cell, method, seed). Its key is the hash of its full spec, what the job computes
and not where its method sits in ``[[methods]]`` (reordering or inserting methods reuses every
finished job), and everything it writes lives under that key: ``records/<key>.json``, ``searches/<key>.json`` (the tau
search), ``shards/<key>/<i>.safetensors`` (samples), ``evidence/<key>.npz`` (the per-sample
inputs of the headline metrics, for paired comparisons: `fairbench.compare`). Each file is written atomically, and a
finished file is never recomputed, so a run killed at any moment and started again ends
with the same records as an uninterrupted run (up to the machine-dependent timings). A
per-job lock file keeps two runs on one directory from doing the same job twice.

The device is chosen here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .compare import write_evidence
from .config import Config, MethodSpec
from .errors import FairbenchError, lookup
from .figures import write_figures
from .methods import Conditional, MethodContext, assigned, check_method, single_switch_advice
from .metrics.cost import PeakMemory
from .metrics.suite import epsilon_spaces, estimate_epsilon, evaluate
from .models import Setup
from .noise import SCHEME as NOISE_SCHEME
from .progress import progress
from .publish import write_leaderboard
from .records import (
    Record, atomic_write_text, make_record, provenance, read_json, read_record, record_path, refuse_position_keyed, spec_hash,
    write_record,
)
from .sample_files import write_sample_folder
from .sampling import PrefixCache, SampleOutput, sample
from .sequential import Look, run_looks
from .shards import ShardedSamples, shard_header, write_shard
from .tau_search import TauSearchResult, run_cyclic_search, run_search

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


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class Job:
    config: Config
    method_index: int  # the method's place in ``[[methods]]``: display order only, never in the spec
    seed: int

    @property
    def method(self) -> MethodSpec:
        return self.config.methods[self.method_index]

    def spec(self) -> dict:
        """Everything the job's results depend on (and nothing they do not, like batch size or the
        method's place in the config, except for a method whose samples depend on their batch:
        `Method.batch_dependent`). Methods of one config that compute the same thing under
        different labels also hold their label, so that each keeps its own job."""
        config = self.config
        method = self.method.record()
        sequential = config.benchmark.sequential
        spec = {
            "benchmark": config.benchmark.name,
            "model": config.model,
            "dataset": config.dataset,
            "sampler": dataclasses.asdict(config.sampler) | {"clip_sample": config.clip_sample()},
            "method": method,
            "n_samples": config.benchmark.n_samples if sequential is None else sequential.as_json(),
            "seed": self.seed,
            "metrics": dataclasses.asdict(config.metrics),
            "requested": "sample i requests value i mod k",
            "noise": NOISE_SCHEME,
        }
        if sum(other.record() == method for other in config.methods) > 1:
            spec["label"] = self.method.display
        if self.method.method_class.batch_dependent:
            spec["batch"] = {"batch_size": config.benchmark.batch_size, "shard_size": config.benchmark.shard_size}
        return spec

    @property
    def key(self) -> str:
        return spec_hash(self.spec())


def plan(configs: list[Config]) -> list[Job]:
    return [
        Job(config, index, seed)
        for config in configs
        for seed in config.benchmark.seeds
        for index in range(len(config.methods))
    ]


# ---------------------------------------------------------------------------------------------
# One job


def _tau_search(job: Job, setup: Setup, out_dir: Path, device: str, kind: str, batch_size: int,
                pair: tuple[int, int] = (0, 1)) -> TauSearchResult:
    path = out_dir / "searches" / f"{job.key[:16]}.json"
    if path.exists():
        saved = read_json(path)
        return TauSearchResult.from_json(saved)
    config = job.config
    result = run_search(
        kind, setup, scheduler_name=config.sampler.scheduler, steps=config.sampler.steps,
        seed=job.seed, batch_size=batch_size, device=device, clip_sample=config.clip_sample(), s0=pair[0], s1=pair[1],
    )
    atomic_write_text(path, json.dumps(result.as_json() | {"wall_s": result.wall_s}) + "\n")
    return result


def _cyclic_search(job: Job, setup: Setup, out_dir: Path, device: str, kind: str, batch_size: int,
                   cycle: tuple[int, ...], **options) -> TauSearchResult:
    path = out_dir / "searches" / f"{job.key[:16]}.json"
    if path.exists():
        return TauSearchResult.from_json(read_json(path))
    config = job.config
    result = run_cyclic_search(
        kind, setup, scheduler_name=config.sampler.scheduler, steps=config.sampler.steps,
        seed=job.seed, batch_size=batch_size, device=device, clip_sample=config.clip_sample(), cycle=cycle, **options,
    )
    atomic_write_text(path, json.dumps(result.as_json() | {"wall_s": result.wall_s}) + "\n")
    return result


# Conditional trajectories of this process: switching jobs continue from them (`PrefixCache`).
PREFIXES = PrefixCache()


def _sample_sharded(job: Job, setup: Setup, method, out_dir: Path, device: str, n: int) -> SampleOutput:
    """Samples 0..n-1 in shards of ``shard_size``; finished shards are reused, not recomputed (a
    shorter last shard of an earlier round of a sequential job is completed by sampling it again).

    The returned samples are a `ShardedSamples` view of the shard files, so the measurements
    read them one shard at a time.
    """
    config = job.config
    size = config.benchmark.shard_size
    k = setup.model.num_attributes
    requested = requested_values(n, k)
    conditions = assigned(method, requested, k, seed=job.seed, indices=range(n))
    folder = out_dir / "shards" / job.key[:16]
    # the shared loop reuses conditional steps computed earlier in this process (same samples)
    clip = {"clip_sample": config.clip_sample(), "prefix_cache": PREFIXES} if setup.sample is None else {}
    if setup.sample is not None and config.clip_sample():
        raise FairbenchError("sampler.clip_sample applies to the shared sampling loop; this model kind samples through its own pipeline")
    paths, sizes, nfe, classifier_evals, wall = [], [], 0, 0, 0.0
    bar = progress(total=n, desc=f"sampling {job.method.display}", unit="sample")
    for lo in range(0, n, size):
        path = folder / f"{lo // size:05d}.safetensors"
        indices = list(range(lo, min(lo + size, n)))
        rows, meta = shard_header(path) if path.exists() else (0, {})
        if rows == len(indices):
            bar.update(len(indices))
        else:
            out = (setup.sample or sample)(
                setup.model, method, conditions[indices],
                scheduler_name=config.sampler.scheduler, steps=config.sampler.steps, seed=job.seed,
                batch_size=config.benchmark.batch_size, indices=indices, device=device, progress=bar.update,
                **clip,
            )
            meta = {"nfe": str(out.nfe), "classifier_evals": str(out.classifier_evals), "wall_s": repr(out.wall_s)}
            write_shard(path, out.samples, meta)
        paths.append(path)
        sizes.append(len(indices))
        nfe, classifier_evals, wall = nfe + int(meta["nfe"]), classifier_evals + int(meta["classifier_evals"]), wall + float(meta["wall_s"])
    bar.close()
    return SampleOutput(
        samples=ShardedSamples(paths, sizes), requested=requested, final=method.final(conditions, k),
        nfe=nfe, wall_s=wall, classifier_evals=classifier_evals,
    )


def run_cell(job: Job, setup: Setup, out_dir: Path, *, device: str) -> Record:
    """One job: resolve tau (searching if asked), sample in shards, measure; returns the record."""
    config, spec = job.config, job.method
    searches: list[TauSearchResult] = []

    def search(kind: str, batch_size: int, pair: tuple[int, int] = (0, 1)) -> int:
        searches.append(_tau_search(job, setup, out_dir, device, kind, batch_size, pair))
        return searches[-1].tau

    def search_points(kind: str, batch_size: int, cycle: tuple[int, ...], **options) -> tuple[int | float, ...]:
        searches.append(_cyclic_search(job, setup, out_dir, device, kind, batch_size, cycle, **options))
        return searches[-1].points

    context = MethodContext(model=setup.model, guidance=setup.guidance, search_tau=search, search_points=search_points,
                            own_sampler=setup.sample is not None)
    method = spec.method_class.build(spec.options(), context)
    search = searches[0] if searches else None
    kept = PREFIXES.bytes
    options, sequential = config.metrics, config.benchmark.sequential
    looks: list[Look] = []
    measuring = 0.0
    with PeakMemory(device) as memory:
        if sequential is None:
            out, epsilon = _sample_sharded(job, setup, method, out_dir, device, config.benchmark.n_samples), None
        else:  # rounds: every look's intervals at the per-look level (fairbench.sequential)
            options = dataclasses.replace(options, confidence=sequential.look_confidence(options.confidence))
            out = epsilon = None

            def measure(n: int) -> tuple[float, tuple[float, float]]:
                nonlocal out, epsilon, measuring
                out = _sample_sharded(job, setup, method, out_dir, device, n)
                started = time.perf_counter()
                spaces = epsilon_spaces(out.samples, setup, options, device=device)
                epsilon = (spaces, estimate_epsilon(spaces, out.requested, options, seed=job.seed))
                measuring += time.perf_counter() - started
                return epsilon[1].value, epsilon[1].interval

            looks = run_looks(sequential, measure)
    memory.exclude(PREFIXES.bytes - kept)  # states kept for later switching jobs are not this method's
    n = len(out.requested)
    evidence: dict = {}
    started = time.perf_counter()
    metrics = evaluate(out.samples, out.requested, setup, seed=job.seed, config=options, final=out.final,
                       device=device, evidence=evidence, epsilon=epsilon)
    measuring += time.perf_counter() - started
    write_evidence(out_dir, job.key, evidence)  # before the record: a record always has its evidence
    if sequential is not None:
        metrics |= {"n_used": n, "look_confidence": options.confidence, "looks": [look.as_json() for look in looks]}
    metrics |= {
        "nfe_per_sample": out.nfe / n,
        "wall_s": out.wall_s,
        "measure_s": measuring,
        "samples_per_s": n / out.wall_s if out.wall_s > 0 else None,
        **memory.as_metrics(),
        **method.run_metrics(),
    }
    if search is not None:
        metrics["tau_search_nfe"] = search.nfe
        metrics["tau_search_s"] = search.wall_s
    if setup.exact_metrics is not None:
        metrics.update(setup.exact_metrics(method=method, scheduler_name=config.sampler.scheduler, steps=config.sampler.steps))
    spec_dict = job.spec() | {
        "epsilon_features": setup.feature_name,
        "method_params": method.params(),
        "final": method.final_rule,
    }
    extra = {"job_key": job.key, "position": job.method_index}
    if search is not None:
        extra["tau_search"] = search.as_json() | {"wall_s": search.wall_s}
    return make_record(
        spec=spec_dict, label=spec.display, metrics=metrics,
        provenance=provenance(device=device, seed=job.seed, batch_size=config.benchmark.batch_size), extra=extra,
    )


@contextmanager
def _job_lock(out_dir: Path, job: Job):
    path = out_dir / "locks" / f"{job.key[:16]}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another run doing this job: wait for it, then reuse its record
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def execute_job(job: Job, setup: Setup, out_dir: Path, *, device: str) -> tuple[Record, bool]:
    """Run a job unless its record exists; returns (record, whether it was computed now)."""
    path = record_path(out_dir, job.key)
    with _job_lock(out_dir, job):
        if path.exists():
            record = read_record(path)
            shown = {"label": job.method.display, "position": job.method_index}
            if any(record.get(name) != value for name, value in shown.items()):  # relabelled or moved: same results
                record.update(shown)  # type: ignore[typeddict-item]
                write_record(out_dir, record)
            return record, False
        record = run_cell(job, setup, out_dir, device=device)
        write_record(out_dir, record)
        return record, True


# ---------------------------------------------------------------------------------------------
# Executors


class SetupCache:
    """Build each (model, dataset) setup once per process."""

    def __init__(self, device: str):
        self.device, self._setups = device, {}

    def __call__(self, config: Config) -> Setup:
        key = json.dumps([config.model, config.dataset], sort_keys=True)
        if key not in self._setups:
            setup = config.model_spec().build(device=self.device, dataset=config.dataset)
            config.check_methods(setup.model.num_train_timesteps)
            context = MethodContext(model=setup.model, guidance=setup.guidance, own_sampler=setup.sample is not None)
            for i, spec in enumerate(config.methods):  # what a method needs of the model, before any work
                check_method(spec.method_class, spec.options(), context, f"methods[{i}]")
            _warm_up(setup, config, self.device)
            self._setups[key] = setup
        return self._setups[key]


def _warm_up(setup: Setup, config: Config, device: str) -> None:
    """Sample two samples for two steps, unmeasured, so that one-time allocations of the process
    (kernels, thread pools, allocator arenas) are not charged to the first job's peak memory."""
    if setup.sample is None:
        sample(setup.model, Conditional(), torch.zeros(2, dtype=torch.long), scheduler_name=config.sampler.scheduler,
               steps=2, seed=0, batch_size=2, device=device)


def run_local(
    jobs: list[Job], out_dir: Path, *, device: str, log: Callable[[str], None], setups: SetupCache | None = None
) -> list[Record]:
    setups = setups or SetupCache(device)
    records = []
    overall = progress(total=len(jobs), desc="benchmark", unit="job")
    for job in jobs:
        start = time.perf_counter()
        record, computed = execute_job(job, setups(job.config), out_dir, device=device)
        records.append(record)
        _log_record(log, job, record, computed, time.perf_counter() - start)
        overall.update(1)
    overall.close()
    return records


def _log_record(log, job: Job, record: dict, computed: bool, seconds: float | None) -> None:
    m = record["metrics"]
    state = "reused" if not computed else f"{seconds:.1f}s" if seconds is not None else "done"
    log(f"{job.config.benchmark.name} | {job.method.display} seed={job.seed}: epsilon={m['epsilon']:.3f} "
        f"[{m['epsilon_ci'][0]:.3f}, {m['epsilon_ci'][1]:.3f}] ({state})")


_RAY_SETUPS: SetupCache | None = None


def _ray_task(job: Job, out_dir: str, device: str) -> tuple[dict, bool]:
    global _RAY_SETUPS
    if _RAY_SETUPS is None:
        _RAY_SETUPS = SetupCache(device)
    return execute_job(job, _RAY_SETUPS(job.config), Path(out_dir), device=device)


def run_ray(jobs: list[Job], out_dir: Path, *, device: str, log: Callable[[str], None], **_) -> list[Record]:
    """Run jobs as Ray tasks: on a local cluster, or on the cluster `ray.init` connects to.

    The output directory must be shared by every node (a network file system on a cluster).
    """
    try:
        import ray
    except ImportError:
        raise FairbenchError("--executor ray needs Ray: pip install 'fairbench[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(_ray_task)
        results = ray.get([remote.remote(job, str(out_dir.resolve()), device) for job in jobs])
    finally:
        if started:
            ray.shutdown()
    for job, (record, computed) in zip(jobs, results):
        _log_record(log, job, record, computed, None)
    return [record for record, _ in results]


EXECUTORS = {"local": run_local, "ray": run_ray}


def run_benchmark(
    configs: Config | list[Config], out_dir: Path, *, device: str = "cpu", executor: str = "local", log=None,
    save_images: bool = False,
) -> list[Record]:
    """Run every job of the grid (finished ones are reused) and write the leaderboard.

    `save_images`: also write each job's samples as files with their table under
    ``samples/<job key>/`` (`fairbench.sample_files`), the input of `fairbench audit`.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    configs = [configs] if isinstance(configs, Config) else list(configs)
    execute = lookup(EXECUTORS, executor, "executor")
    out_dir = Path(out_dir)
    check_output(out_dir)
    refuse_position_keyed(out_dir)
    names = [c.benchmark.name for c in configs]
    if len(set(names)) != len(names):
        raise FairbenchError(f"grid cells share a benchmark name: {names}")
    setups = SetupCache(device)
    for config in configs:  # build and validate every cell before writing anything
        setups(config)
    advice = {line for config in configs for spec in config.methods
              if (line := single_switch_advice(spec.method_class, spec.options(), setups(config).model)) is not None}
    for line in sorted(advice):
        log(line)
    prepare_output(out_dir)
    jobs = plan(configs)
    records = execute(jobs, out_dir, device=device, log=log, setups=setups)
    if save_images:
        for job, record in zip(jobs, records):
            write_job_samples(job, record, setups(job.config), out_dir)
    cells = len(configs) > 1
    write_figures(out_dir, [
        (f"{job.config.benchmark.name} {record['label']}" if cells else record["label"], record,
         tuple(setups(job.config).model.attribute_names))
        for job, record in zip(jobs, records) if job.seed == job.config.benchmark.seeds[0]
    ])
    write_leaderboard(out_dir)  # after the figures: the page shows the sample grids
    return records


def write_job_samples(job: Job, record: dict, setup: Setup, out_dir: Path) -> Path:
    """The samples of a finished job as files with their requested and final values."""
    samples = ShardedSamples.from_folder(out_dir / "shards" / job.key[:16])
    if samples is None:
        raise FairbenchError(f"the samples of {record['label']!r} are not in {str(out_dir / 'shards')!r}; run it again")
    k = setup.model.num_attributes
    requested = requested_values(len(samples), k)
    tau = record["metrics"].get("tau")  # a searched tau is not searched again
    points = tuple(record["metrics"].get("taus") or ())
    context = MethodContext(model=setup.model, guidance=setup.guidance, search_tau=lambda kind, batch_size, pair: tau,
                            search_points=lambda kind, batch_size, cycle, **options: points)
    method = job.method.method_class.build(job.method.options(), context)
    final = method.final(assigned(method, requested, k, seed=job.seed, indices=range(len(samples))), k)
    return write_sample_folder(out_dir / "samples" / job.key[:16], samples, requested, final, setup.model.attribute_names)


def check_output(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FairbenchError(f"output directory {str(out_dir)!r} exists and is not a directory")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FairbenchError(f"output directory {str(out_dir)!r} is inside {str(parent)!r}, which is a file")
            break


def prepare_output(out_dir: Path) -> None:
    check_output(out_dir)
    try:
        (out_dir / "records").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FairbenchError(f"cannot create output directory {str(out_dir)!r}: {exc.strerror}") from None
