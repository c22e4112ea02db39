"""The ``fairbench`` command line.

Every user error ends as one line, ``fairbench: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .audit import run_audit
from .cache import cache_root, without_shipped
from .check import CheckSpec, TIMING_METRICS, check_directories, load_check_config, with_overrides
from .compare import STATISTICS, compare_records, format_table, load_jobs
from .config import load_config, load_grid
from .planning import format_plans, plan_from_jobs, plan_from_values
from .retrain_spread import RetrainSpread
from .datasets import DATASETS, _load_builtin
from .errors import FairbenchError, lookup
from .figures import epsilon_curves
from .publish import FORMATS, read_report, write_leaderboard
from .methods import METHODS
from .metrics import METRICS
from .models import MODEL_KINDS, _load_optional_kinds
from .report import ValidationSettings, config_tau_report, model_tau_markdown, tau_search_report, write_metrics_validation
from .runner import choose_device, run_benchmark
from .schedulers import SCHEDULERS
from .tau_search import CYCLIC_SEARCHES, SEARCHES, run_search
from .website import build_site

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "digits.toml"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise FairbenchError(message)


def _cmd_run(args) -> int:
    configs = load_grid(args.config or DEFAULT_CONFIG)
    out = Path(args.out) if args.out else Path("results") / configs[0].benchmark.name.split("/")[0]
    device = choose_device(args.device)
    records = run_benchmark(configs, out, device=device, executor=args.executor, save_images=args.save_images)
    print(f"{len(records)} records in {out / 'records'}; leaderboard: {out / 'leaderboard.md'}, {out / 'leaderboard.csv'}")
    if args.save_images:
        print(f"samples as files with their tables (input of `fairbench audit`): {out / 'samples'}/<job key>/")
    print((out / "leaderboard.md").read_text(encoding="utf-8"))
    return 0


def _cmd_audit(args) -> int:

    if args.seed < 0:
        raise FairbenchError(f"--seed must be non-negative, got {args.seed}")
    out = Path(args.out) if args.out else Path("results") / f"audit-{Path(args.samples).resolve().name}"
    record = run_audit(args.samples, args.real, out, label=args.label, seed=args.seed, device=choose_device(args.device))
    m = record["metrics"]
    print(f"{record['label']}: epsilon={m['epsilon']:.3f} [{m['epsilon_ci'][0]:.3f}, {m['epsilon_ci'][1]:.3f}]")
    print(f"record in {out / 'records'}; leaderboard: {out / 'leaderboard.md'}, {out / 'leaderboard.csv'}")
    print((out / "leaderboard.md").read_text(encoding="utf-8"))
    return 0


def _cmd_train(args) -> int:
    config = load_config(args.config or DEFAULT_CONFIG)
    spec = config.model_spec()
    if not spec.trains:
        raise FairbenchError(f"model kind {spec.kind!r} has nothing to train; `fairbench train` trains the networks of kind 'unet'")
    with without_shipped():  # `train` trains: shipped networks are for runs
        prepared = spec.prepare(device=choose_device(args.device), dataset=config.dataset)
    print(f"cache: {cache_root()}")
    for key, value in prepared.info.items():
        print(f"{key}: {value}")
    return 0


def _cmd_tau(args) -> int:
    lookup(SEARCHES, args.search, "tau search")
    config = load_config(args.config)
    device = choose_device(args.device)
    setup = config.model_spec().build(device=device, dataset=config.dataset)
    result = run_search(
        args.search, setup,
        scheduler_name=config.sampler.scheduler, steps=config.sampler.steps,
        seed=args.seed, batch_size=args.batch_size, device=device, clip_sample=config.clip_sample(),
    )
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        print(f"tau = {result.tau} ({result.search} search, {result.nfe} model evaluations, {result.wall_s:.2f}s)")
        for tau, value in result.curve:
            print(f"{tau:6d}  {value: .6f}")
    return 0


def _cmd_ls(args) -> int:
    _load_optional_kinds()
    sections = {
        "methods": list(METHODS),
        "models": list(MODEL_KINDS),
        "schedulers": list(SCHEDULERS),
        "tau searches": list(SEARCHES),
        "cyclic switching searches": list(CYCLIC_SEARCHES),
        "metrics": [f"{name} ({info.direction} is better)" if info.direction != "none" else name for name, info in METRICS.items()],
    }
    _load_builtin()
    sections["datasets"] = list(DATASETS)
    for title, names in sections.items():
        print(f"{title}:")
        for name in names:
            print(f"  {name}")
    return 0


def _cmd_leaderboard(args) -> int:
    if args.format is not None:
        lookup(FORMATS, args.format, "format")
        print(FORMATS[args.format](read_report(Path(args.directory))), end="")
        return 0
    paths = write_leaderboard(Path(args.directory))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_site(args) -> int:
    paths = build_site([Path(d) for d in args.directories], Path(args.out))
    print(f"wrote {len(paths)} files; open {paths[0]}")
    return 0


def _cmd_report(args) -> int:
    if args.name == "metrics":
        return _report_metrics(args)
    if args.stride <= 0:
        raise FairbenchError(f"--stride must be positive, got {args.stride}")
    configs = [load_config(path) for path in args.config]
    if not args.skip_analytic:
        print(tau_search_report(batch_size=args.batch_size, seed=args.seed), end="")
    device = choose_device(args.device) if configs else "cpu"
    reports = []
    for config in configs:
        report = config_tau_report(config, seed=args.seed, batch_size=args.batch_size, stride=args.stride, device=device)
        reports.append(report)
        print("\n" + model_tau_markdown(report), end="", flush=True)
    if args.figure and reports:
        panels = [(r.label, r.sweep.as_json(), {k: v.tau for k, v in r.searches.items()}) for r in reports]
        print(f"\nwrote {epsilon_curves(panels, Path(args.figure))}")
    return 0


def _report_metrics(args) -> int:
    if args.draws is not None and args.draws < 1:
        raise FairbenchError(f"--draws must be positive, got {args.draws}")
    if args.coverage_draws is not None and args.coverage_draws < 1:
        raise FairbenchError(f"--coverage-draws must be positive, got {args.coverage_draws}")
    if args.coverage_large_draws is not None and args.coverage_large_draws < 1:
        raise FairbenchError(f"--coverage-large-draws must be positive, got {args.coverage_large_draws}")
    if args.jobs < 1:
        raise FairbenchError(f"--jobs must be positive, got {args.jobs}")
    settings = ValidationSettings(seed=args.seed, jobs=args.jobs,
                                  **({"draws": args.draws} if args.draws is not None else {}),
                                  **({"coverage_draws": args.coverage_draws} if args.coverage_draws is not None else {}),
                                  **({"coverage_large_draws": args.coverage_large_draws}
                                     if args.coverage_large_draws is not None else {}))
    print(f"wrote {write_metrics_validation(args.out or 'docs/metrics-validation.md', settings)}")
    return 0


def _cmd_compare(args) -> int:
    if args.replicates < 2:
        raise FairbenchError(f"--replicates must be at least 2, got {args.replicates}")
    jobs = load_jobs([Path(d) for d in args.directory])
    comparisons = compare_records(jobs, args.metric or None, replicates=args.replicates, seed=args.seed,
                                  spreads=RetrainSpread.measured(), explicit=bool(args.metric))
    if args.json:
        print(json.dumps([c.as_json() for c in comparisons]))
    else:
        seeds = sorted({j.seed for j in jobs})
        print(f"{len(comparisons)} paired comparisons over seeds {seeds} ({args.replicates} bootstrap replicates; "
              "* : p (Holm) < 0.05)\n")
        print(format_table(comparisons), end="")
    return 0


def _cmd_plan(args) -> int:
    if args.half_width is None and args.difference is None:
        raise FairbenchError("give --half-width (epsilon's interval) and/or --difference (to detect between two methods)")
    if args.half_width is not None and not 0 < args.half_width < 1:
        raise FairbenchError(f"--half-width must lie in (0, 1), got {args.half_width}")
    options = {"half_width": args.half_width, "difference": args.difference, "power": args.power, "alpha": args.alpha}
    if args.directory:
        if args.epsilon is not None:
            raise FairbenchError("give a pilot run or --epsilon, not both")
        plans = plan_from_jobs(load_jobs([Path(d) for d in args.directory]), **options)
    elif args.epsilon is None:
        raise FairbenchError("give a pilot run directory or an assumed --epsilon")
    else:
        plans = plan_from_values(args.epsilon, **options)
    print(format_plans(plans), end="")
    return 0


def _cmd_check(args) -> int:
    spec = load_check_config(args.config) if args.config else CheckSpec()
    exclude = [m for m in spec.exclude if m not in TIMING_METRICS] if args.include_timing else None
    spec = with_overrides(
        spec, tolerances=args.tolerance, k=args.k, match=args.match, exclude=exclude,
        fail_on="worse" if args.worse_only else None, allow_missing=True if args.allow_missing else None,
    )
    result = check_directories(Path(args.directory), Path(args.baseline), spec)
    if args.all or not result.passed:
        print(result.table(everything=args.all))
    print(("ok: " if result.passed else "FAILED: ") + result.summary())
    return 0 if result.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fairbench", description="Fairness audit and benchmarking suite for diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a benchmark config (default: the embedded digits benchmark)")
    run.add_argument("config", nargs="?", help="benchmark TOML (default: embedded digits benchmark)")
    run.add_argument("--out", help="output directory (default: results/<benchmark name>)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--executor", default="local", help="local (default) or ray")
    run.add_argument("--save-images", action="store_true",
                     help="also write each job's samples as files with a table under OUT/samples/ (input of `fairbench audit`)")
    run.set_defaults(func=_cmd_run)

    audit = commands.add_parser("audit", help="measure samples made by any generator (a folder of files with a table)")
    audit.add_argument("samples", help="folder of sample files with samples.csv (file,requested[,final])")
    audit.add_argument("--real", required=True,
                       help="benchmark config or [dataset] TOML (real data, judge and metric settings), or a folder with labels.csv")
    audit.add_argument("--out", help="output directory (default: results/audit-<samples folder name>)")
    audit.add_argument("--label", help="leaderboard row name (default: the samples folder name)")
    audit.add_argument("--seed", type=int, default=0, help="seed of the estimators (a run uses its job's seed)")
    audit.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    audit.set_defaults(func=_cmd_audit)

    train = commands.add_parser("train", help="train (or find cached) the networks of a config's image model")
    train.add_argument("config", nargs="?", help="benchmark TOML (default: embedded digits benchmark)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.set_defaults(func=_cmd_train)

    tau = commands.add_parser("tau", help="search the transition point tau for a config's model")
    tau.add_argument("config")
    tau.add_argument("--search", default="reference", help="reference, direct, direct_mean or sweep")
    tau.add_argument("--batch-size", type=int, default=256)
    tau.add_argument("--seed", type=int, default=0)
    tau.add_argument("--device", default="auto")
    tau.add_argument("--json", action="store_true", help="print {tau, search, curve, nfe} as JSON")
    tau.set_defaults(func=_cmd_tau)

    ls = commands.add_parser("ls", help="list methods, models, schedulers, searches, metrics, datasets")
    ls.set_defaults(func=_cmd_ls)

    board = commands.add_parser("leaderboard", help="regenerate the leaderboard of a results directory from its records")
    board.add_argument("directory")
    board.add_argument("--format", help="print one view instead of writing the files: md, csv (the headline view) "
                       "or latex (the headline view as a booktabs table)")
    board.set_defaults(func=_cmd_leaderboard)

    site = commands.add_parser("site", help="one static site over several leaderboards (index, a page per benchmark and "
                               "per method, all records as JSON and CSV)")
    site.add_argument("directories", nargs="+", metavar="DIR", help="results directories (each with records/)")
    site.add_argument("--out", required=True, help="folder of the site (created; a previous site there is replaced)")
    site.set_defaults(func=_cmd_site)

    report = commands.add_parser(
        "report", help="generated reports (tau-search: the tau searches vs the exact optimum and the measured epsilon(tau); "
        "metrics: measurements vs known truth, written to docs/metrics-validation.md)"
    )
    report.add_argument("name", choices=["tau-search", "metrics"])
    report.add_argument("--out", help="metrics: output file (default docs/metrics-validation.md)")
    report.add_argument("--draws", type=int, help="metrics: independent draws per case (default 12; 3 above 1000 samples per group)")
    report.add_argument("--coverage-draws", type=int,
                        help="metrics: independent draws per row of the coverage table (default 200)")
    report.add_argument("--coverage-large-draws", type=int,
                        help="metrics: draws per coverage row above 500 samples per group (default 200)")
    report.add_argument("--jobs", type=int, default=1, help="metrics: processes for the coverage draws (default 1)")
    report.add_argument("--batch-size", type=int, default=256)
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("--config", action="append", default=[],
                        help="also score the searches on this config's model against its measured epsilon(tau) (repeatable)")
    report.add_argument("--stride", type=int, default=1, help="sweep every stride-th candidate tau")
    report.add_argument("--skip-analytic", action="store_true", help="leave out the analytic model's exact table")
    report.add_argument("--figure", help="write the epsilon(tau) curves of the --config models to this PNG")
    report.add_argument("--device", default="auto")
    report.set_defaults(func=_cmd_report)

    compare = commands.add_parser(
        "compare", help="paired differences between every two methods of a run, with intervals, p-values and Holm's correction"
    )
    compare.add_argument("directory", nargs="+", help="results directory of a run (several: records of one benchmark)")
    compare.add_argument("--metric", action="append", default=[], metavar="M",
                         help=f"metric to compare (repeatable; default: epsilon, fd, target_gap, fid, utility_fraction; "
                              f"valid: {', '.join(STATISTICS)})")
    compare.add_argument("--json", action="store_true", help="print a JSON list of {metric, a, b, difference, interval, p_value, p_holm}")
    compare.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates (default 1000)")
    compare.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    compare.set_defaults(func=_cmd_compare)

    plan = commands.add_parser(
        "plan", help="samples per group for a target half-width of epsilon's interval and for 80%% power to detect a difference"
    )
    plan.add_argument("directory", nargs="*", help="a pilot run's results directory (its records and evidence)")
    plan.add_argument("--epsilon", type=float, help="assumed epsilon (instead of a pilot run)")
    plan.add_argument("--half-width", type=float, help="target half-width of epsilon's 95%% interval")
    plan.add_argument("--difference", type=float, help="difference of epsilon to detect between two methods")
    plan.add_argument("--power", type=float, default=0.8, help="power to detect --difference (default 0.8)")
    plan.add_argument("--alpha", type=float, default=0.05, help="two-sided level of the test (default 0.05)")
    plan.set_defaults(func=_cmd_plan)

    check = commands.add_parser(
        "check", help="compare a run's records with baseline records; exit 1 when a metric moved beyond its tolerance"
    )
    check.add_argument("directory", help="results directory of the new run")
    check.add_argument("--baseline", required=True, help="baseline results directory, records directory or record file")
    check.add_argument("--tolerance", action="append", default=[], metavar="METRIC=VALUE",
                       help="absolute bound (fid=2.0) or percentage of the baseline (fid=5%%); repeatable")
    check.add_argument("--config", help="TOML file with a [check] table (options here override it)")
    check.add_argument("--k", type=float, help="multiplier on the combined interval half-width (default 1)")
    check.add_argument("--match", choices=["spec_hash", "label_seed"], help="how records are paired (default spec_hash)")
    check.add_argument("--worse-only", action="store_true", help="pass changes in a metric's better direction")
    check.add_argument("--include-timing", action="store_true", help=f"also compare the machine-dependent metrics ({', '.join(TIMING_METRICS)})")
    check.add_argument("--allow-missing", action="store_true", help="pass when baseline records have no new counterpart")
    check.add_argument("--all", action="store_true", help="print every comparison, not only what moved")
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "batch_size", 1) is not None and getattr(args, "batch_size", 1) <= 0:
            raise FairbenchError(f"--batch-size must be positive, got {args.batch_size}")
        return args.func(args)
    except FairbenchError as exc:
        message = " ".join(str(exc).split())
        print(f"fairbench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fairbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
