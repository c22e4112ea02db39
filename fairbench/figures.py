"""Figures of a run, written beside its records: sample grids and tau-search curves.

- ``figures/samples_<method>.png``: per method, the first samples of each requested group
  (image benchmarks only), all methods from the same noise (sample i's noise depends on
  (seed, i) only), so the grids compare like with like column by column.
- ``figures/tau_search.png``: the curve of every tau search (Algorithm 2's ``D(tau)``, the
  direct search's measured gap), with the chosen tau marked.

Only the first seed of a benchmark is drawn. Matplotlib is used through its object API
with the Agg canvas, so no global backend is set.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PER_GROUP = 32  # samples shown per requested group
COLUMNS = 16


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_") or "method"


def mosaic(images: torch.Tensor, columns: int = COLUMNS, gap: int = 1) -> np.ndarray:
    """Tile ``[N, C, H, W]`` images in ``[-1, 1]`` into one ``[rows*(H+gap), cols*(W+gap), C]`` array in [0, 1]."""
    images = ((images.detach().float().clamp(-1, 1) + 1) / 2).cpu().numpy()
    n, channels, height, width = images.shape
    rows = max(1, -(-n // columns))
    canvas = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap, channels), dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (height + gap): r * (height + gap) + height, c * (width + gap): c * (width + gap) + width] = image.transpose(1, 2, 0)
    return canvas


def sample_grid(samples: torch.Tensor, requested: torch.Tensor, final: torch.Tensor, names: tuple[str, ...],
                title: str, path: Path) -> Path:
    """One panel per requested value: its first `PER_GROUP` samples, titled with where they end."""
    groups = [a for a in range(len(names)) if bool((requested == a).any())]
    figure = Figure(figsize=(8, 0.5 + 0.6 * len(groups) * (PER_GROUP // COLUMNS)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(groups), 1, squeeze=False)[:, 0]
    for axis, a in zip(axes, groups):
        rows = torch.nonzero(requested == a).flatten()[:PER_GROUP]
        image = mosaic(samples[rows])
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ends = sorted({names[int(v)] for v in final[rows]})
        suffix = "" if ends == [names[a]] else f" (ends {', '.join(ends)})"
        axis.set_title(f"requested {names[a]}{suffix}", fontsize=9)
        axis.set_axis_off()
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


CURVE_LABELS = {"reference": "D(tau)", "sweep": "epsilon(tau)", "direct": "discrepancy(tau)"}


def epsilon_curves(panels: list[tuple[str, dict, dict[str, int]]], path: Path) -> Path:
    """One panel per model: the sweep's epsilon(tau) with its interval band, each search's tau.

    `panels`: (title, sweep as `TauSearchResult.as_json()`, {search name: chosen tau}).
    """
    figure = Figure(figsize=(5 * len(panels), 3.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    colours = ["tab:red", "tab:green", "tab:purple", "tab:orange"]
    for axis, (title, sweep, chosen) in zip(axes, panels):
        taus, values = zip(*sweep["curve"])
        low, high = zip(*sweep["band"])
        axis.fill_between(taus, low, high, alpha=0.25, linewidth=0)
        axis.plot(taus, values, marker="o", markersize=2, label=f"sweep (min at {sweep['tau']})")
        for colour, (name, tau) in zip(colours, chosen.items()):
            axis.axvline(tau, color=colour, linestyle="--", linewidth=1, label=f"{name}: {tau}")
        axis.set_xlabel("tau (training timestep)")
        axis.set_ylabel("epsilon(tau)")
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def tau_curves(searches: list[tuple[str, dict]], path: Path) -> Path:
    """One panel per search: its curve (tau, value) and the chosen tau."""
    figure = Figure(figsize=(5 * len(searches), 3.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(searches), squeeze=False)[0]
    for axis, (label, search) in zip(axes, searches):
        taus, values = zip(*search["curve"])
        if search.get("band"):  # the sweep's interval
            axis.fill_between(taus, *zip(*search["band"]), alpha=0.25, linewidth=0)
        axis.plot(taus, values, marker="o", markersize=3)
        axis.axvline(search["tau"], color="tab:red", linestyle="--", label=f"tau = {search['tau']}")
        axis.axhline(0.0, color="grey", linewidth=0.6)
        axis.set_xlabel("tau (training timestep)")
        axis.set_ylabel(CURVE_LABELS.get(search["search"], "gap(tau)"))
        axis.set_title(label, fontsize=9)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def write_figures(out_dir: Path, runs: list[tuple[str, dict, tuple[str, ...]]]) -> list[Path]:
    """Draw the figures of finished runs from their records and shard files.

    `runs`: (label, record, attribute names) of each run to draw (the first seed of each
    method). Sample grids go to ``figures/<grid_filename(label)>``; all tau searches to
    ``figures/tau_search.png``.
    """
    from .html_report import grid_filename
    from .shards import ShardedSamples

    folder = Path(out_dir) / "figures"
    paths, searches = [], []
    for label, record, names in runs:
        if "tau_search" in record:
            searches.append((label, record["tau_search"]))
        samples = ShardedSamples.from_folder(Path(out_dir) / "shards" / record["job_key"][:16])
        if samples is None or len(samples.shape) != 4:  # only images get a grid
            continue
        k, n = len(names), len(samples)
        # the first PER_GROUP samples of each requested value (sample i requests i mod k)
        rows = np.array([a + k * j for a in range(k) for j in range(PER_GROUP) if a + k * j < n])
        requested = torch.as_tensor(rows % k)
        tau = record["metrics"].get("tau")
        switched = record["spec"]["method"]["name"] == "attribute_switching" and tau is not None and tau >= 0
        final = (requested + 1) % k if switched else requested
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(sample_grid(samples[rows], requested, final, names, f"{label} (seed {record['spec']['seed']})",
                                 folder / grid_filename(label)))
    if searches:
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(tau_curves(searches, folder / "tau_search.png"))
    return paths
