"""Copy the networks of benchmark configs from the cache into the package (fairbench/networks/).

    python tools/ship_networks.py fairbench/configs/digits.toml baselines/digits-bias05.toml
    python tools/ship_networks.py baselines/fashion.toml --threads 1 --machine "2-core CPU shared with other work"

Trains nothing that is not cached already only if the cache holds it; otherwise it trains first
(as `fairbench train` does). Writes ``fairbench/networks/PROVENANCE.json`` naming, for every
shipped artifact, the config file and its sha256, the training recipe (spec, data digest,
format version) and the command that reproduces it, and, when given, the torch thread count
and the machine it was trained on (CPU arithmetic differs between them, docs/networks.md).
Entries of configs not named keep their place in ``PROVENANCE.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import fairbench
from fairbench.cache import MARKER, SHIPPED_ROOT, recorded_artifacts, without_shipped
from fairbench.config import load_config


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--threads", type=int, help="torch threads the networks were trained with")
    parser.add_argument("--machine", help="the machine they were trained on, in words")
    args = parser.parse_args(argv)
    paths = args.configs
    provenance = {"fairbench": fairbench.__version__, "artifacts": []}
    existing = SHIPPED_ROOT / "PROVENANCE.json"
    if existing.is_file():
        kept = json.loads(existing.read_text(encoding="utf-8"))["artifacts"]
        provenance["artifacts"] = [entry for entry in kept if entry["config"] not in paths]
    trained_with = {key: value for key, value in (("threads", args.threads), ("machine", args.machine)) if value is not None}
    for path in paths:
        config = load_config(path)
        with without_shipped(), recorded_artifacts() as used:
            config.model_spec().prepare(device="cpu", dataset=config.dataset)
        for recipe, found in used:
            target = SHIPPED_ROOT / found.kind / found.key[:16]
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(found.directory, target, ignore=shutil.ignore_patterns("checkpoint"))
            assert (target / MARKER).is_file()
            provenance["artifacts"].append({
                "kind": found.kind, "key": found.key, "directory": str(target.relative_to(SHIPPED_ROOT)),
                "config": path, "config_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                "recipe": recipe, "command": f"fairbench train {path}",
            } | ({"trained_with": trained_with} if trained_with else {}))
    (SHIPPED_ROOT / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sizes = sum(f.stat().st_size for f in SHIPPED_ROOT.rglob("*") if f.is_file())
    print(f"{len(provenance['artifacts'])} artifacts, {sizes / 1e6:.1f} MB in {SHIPPED_ROOT}")


if __name__ == "__main__":
    main(sys.argv[1:])
