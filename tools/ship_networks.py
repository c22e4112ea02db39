"""Copy the networks of benchmark configs from the cache into the package (fairbench/networks/).

    python tools/ship_networks.py fairbench/configs/digits.toml baselines/digits-bias05.toml

Trains nothing that is not cached already only if the cache holds it; otherwise it trains first
(as `fairbench train` does). Writes ``fairbench/networks/PROVENANCE.json`` naming, for every
shipped artifact, the config file and its sha256, the training recipe (spec, data digest,
format version) and the command that reproduces it. The entries of configs not named on the
command line are kept, so one config's networks can be shipped without retraining the others.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import fairbench
from fairbench.cache import MARKER, SHIPPED_ROOT, recorded_artifacts, without_shipped
from fairbench.config import load_config


def main(paths: list[str]) -> None:
    provenance = {"fairbench": fairbench.__version__, "artifacts": []}
    listed = SHIPPED_ROOT / "PROVENANCE.json"
    if listed.is_file():  # the artifacts of configs not named here stay shipped, with their provenance
        earlier = json.loads(listed.read_text(encoding="utf-8"))
        provenance["artifacts"] = [a for a in earlier.get("artifacts", [])
                                   if a["config"] not in paths and (SHIPPED_ROOT / a["directory"]).is_dir()]
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
            })
    (SHIPPED_ROOT / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sizes = sum(f.stat().st_size for f in SHIPPED_ROOT.rglob("*") if f.is_file())
    print(f"{len(provenance['artifacts'])} artifacts, {sizes / 1e6:.1f} MB in {SHIPPED_ROOT}")


if __name__ == "__main__":
    main(sys.argv[1:])
