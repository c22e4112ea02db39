"""The package's import graph, read from the source with `ast`: no cycles, layers that point one
way (cli -> runner -> methods, searches, models, metrics -> sampling -> noise, schedulers), and
imports at module top except for optional heavy dependencies."""

import ast
import sys
from pathlib import Path

import fairbench

PACKAGE = Path(fairbench.__file__).parent

# A module may import modules of its own layer or below, never above. Longest prefix wins.
LAYERS = {
    "errors": 0,
    "tables": 1, "noise": 1, "schedulers": 1, "records": 1, "cache": 1, "models.base": 1, "progress": 1, "stats": 1, "retrain_spread": 1, "sequential": 1,
    "sampling": 2,
    "methods": 3, "tau_search": 3, "models": 3, "metrics": 3, "datasets": 3, "classifiers": 3, "train": 3, "shards": 3, "sample_files": 3,
    "config": 4, "leaderboard": 4, "report_model": 4, "writers": 4, "publish": 4, "website": 4, "html_report": 4, "figures": 4, "report": 4, "check": 4, "testing": 4, "compare": 4, "planning": 4,
    "runner": 5, "audit": 5, "network_quality": 5,
    "cli": 6,
    "__main__": 7,
}

# Function-local imports allowed: optional or heavy dependencies that only some runs need.
LOCAL_IMPORTS_ALLOWED = {
    "ray",  # the Ray executor (the `ray` extra)
    "transformers",  # the CLIP judge of text-to-image runs
    "diffusers.DiffusionPipeline",  # text-to-image pipelines (imports transformers)
    "cleanfid", "torchvision", "torchmetrics",  # Inception feature stacks for image FID/KID
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path):
    """(target, imported names, whether at module top) for each import statement."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], id(node) in top
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join(["fairbench", *base, *([node.module] if node.module else [])])
            else:
                target = node.module
            yield target, [alias.name for alias in node.names], id(node) in top


def _graph(*, packages: bool) -> dict[str, set[str]]:
    """Module -> the package modules it imports; with `packages`, also the packages a dotted
    import initialises (what runs at import time, for cycles; layers judge the explicit imports)."""
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names, _ in _imports(name, path):
            if not target.startswith("fairbench"):
                continue
            target = target.removeprefix("fairbench").lstrip(".")
            candidates = [f"{target}.{n}" if target else n for n in names] + [target]
            for candidate in candidates:
                if candidate not in modules or candidate in ("", name):
                    continue
                graph[name].add(candidate)
                if not packages:
                    continue
                # Importing a.b runs a's __init__ first, unless we are inside a already.
                parts = candidate.split(".")
                for i in range(1, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in modules and not (name + ".").startswith(parent + "."):
                        graph[name].add(parent)
    return graph


def _layer(name: str) -> int:
    keys = [k for k in LAYERS if name == k or name.startswith(k + ".")]
    assert keys, f"fairbench.{name} has no layer: add it to LAYERS in {__file__}"
    return LAYERS[max(keys, key=len)]


def test_every_module_has_a_layer_and_imports_point_down():
    upward = [
        f"fairbench.{a} (layer {_layer(a)}) imports fairbench.{b} (layer {_layer(b)})"
        for a, targets in _graph(packages=False).items() for b in targets if _layer(b) > _layer(a)
    ]
    assert not upward, "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _local_imports() -> list[str]:
    """Function-local imports that are not on the allow-list."""
    bad = []
    for name, path in _modules().items():
        for target, names, at_top in _imports(name, path):
            if at_top or target == "__future__":
                continue
            optional = target.split(".")[0] in LOCAL_IMPORTS_ALLOWED
            listed = bool(names) and all(f"{target}.{n}" in LOCAL_IMPORTS_ALLOWED for n in names)
            if not (optional or listed):
                bad.append(f"fairbench.{name}: import {target} {names}")
    return bad


def test_no_import_cycles():
    cycles = _cycles(_graph(packages=True))
    assert not cycles, "\n".join(cycles)


def test_function_local_imports_are_only_for_optional_dependencies():
    bad = _local_imports()
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_planted_cycle_and_planted_local_imports(tmp_path, monkeypatch):
    # The checks must be able to fail: plant each fault in a small copy of the package.
    copy = tmp_path / "fairbench"
    copy.mkdir()
    (copy / "__init__.py").write_text("")
    (copy / "errors.py").write_text("from .tables import x\n")
    (copy / "tables.py").write_text(
        "from .errors import y\n\ndef f():\n    from . import errors\n    import sklearn\n    from diffusers import UNet2DModel\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    assert _cycles(_graph(packages=True)) == ["errors -> tables -> errors"]
    assert len(_local_imports()) == 3
