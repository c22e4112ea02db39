"""Measure the shipped networks of a config and retrained sets beside them (`fairbench.network_quality`).

    FAIRBENCH_CACHE=/tmp/a fairbench train                   # a retrain of the default config
    python tools/network_quality.py /tmp/a [/tmp/b ...] [--config CONFIG ...] [--json OUT]
    python tools/network_quality.py --reference baselines/fashion.toml   # the shipped Fashion-MNIST set alone

Each positional argument is a cache root holding a trained set; ``--config`` gives, per cache,
the config it was trained from (default: the reference config for all), so retrains
with changed seeds can be measured too. Every generator's samples are scored by the shipped
judge of the reference config (``--reference``, default the embedded digits config), on its
dataset's held-out images. Prints one column per set and the difference from the shipped
set, and flags what leaves `RETRAIN_TOLERANCES`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fairbench.cache import CACHE_ENV, without_shipped
from fairbench.cli import DEFAULT_CONFIG
from fairbench.config import load_config
from fairbench.models.unet import labelled_splits
from fairbench.network_quality import RETRAIN_TOLERANCES, held_out, network_quality, quality_differences


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caches", nargs="*", help="cache roots, each holding a trained set")
    parser.add_argument("--config", action="append", default=[], help="config of each cache, in order (default: --reference)")
    parser.add_argument("--reference", default=str(DEFAULT_CONFIG),
                        help="config whose shipped set (and judge) is the reference (default: digits)")
    parser.add_argument("--json", help="write every set's numbers to this file")
    args = parser.parse_args(argv)
    configs = args.config + [args.reference] * (len(args.caches) - len(args.config))

    default = load_config(args.reference)
    data = held_out(labelled_splits(default.dataset))
    shipped = default.model_spec().prepare(device="cpu", dataset=default.dataset)
    results = {"shipped": network_quality(shipped, data, reference=shipped.judge)}
    for cache, path in zip(args.caches, configs):
        config = load_config(path)
        os.environ[CACHE_ENV] = cache
        with without_shipped():
            networks = config.model_spec().prepare(device="cpu", dataset=config.dataset)
        if any(value for key, value in networks.info.items() if key.endswith("trained_now")):
            print(f"note: {cache} lacked part of the set; it was trained now", file=sys.stderr)
        results[f"{cache} ({Path(path).name})"] = network_quality(networks, data, reference=shipped.judge)

    names = list(results)
    print("| number | tolerance | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for key in results["shipped"]:
        cells = [f"{results['shipped'][key]:.4f}"]
        cells += [f"{results[n][key]:.4f} ({results[n][key] - results['shipped'][key]:+.4f})" for n in names[1:]]
        print(f"| {key} | {RETRAIN_TOLERANCES.get(key, '-')} | " + " | ".join(cells) + " |")
    for name in names[1:]:
        for line in quality_differences(results["shipped"], results[name]):
            print(f"outside tolerance, {name}: {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
