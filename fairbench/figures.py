"""Every figure fairbench draws, with one plotting stack (matplotlib's object API, Agg/SVG canvases).

Written beside a run's records (`write_figures`):

- ``figures/<grid_filename(label)>``: per method, the first samples of each requested group
  (image benchmarks only), all methods from the same noise (sample i's noise depends on
  (seed, i) only), so the grids compare like with like column by column. Each sample pixel
  is a square block of `pixel_scale` image pixels (nearest neighbour, no smoothing), and
  each group is labelled with its request, where the method sends it and what the judge
  saw (``judged_distribution`` of the record).
- ``figures/tau_search.png``: the curve of every tau search (Algorithm 2's ``D(tau)``, the
  direct search's measured gap), with the chosen tau marked.

Drawn for the leaderboard page (`fairbench.html_report`), from the records' numbers: the
tau-search curves of a method over its seeds, the fairness-versus-quality plot and the
fairness strip; `svg_data_uri` turns any of them into an ``<img>`` source.

Only the first seed of a benchmark gets sample grids and ``tau_search.png``. No global
backend or style is set; outputs carry no date or version, so they are reproducible.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from .shards import ShardedSamples

PER_GROUP = 32  # samples shown per requested group
COLUMNS = 16
SAMPLE_SIDE_PX = 40  # about this many image pixels per sample side in a grid (8x8 digits: 5x)
GRID_DPI = 100
GRID_MARGIN_PX = 8
GRID_TITLE_PX = 26
GRID_LABEL_PX = 22
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# Reproducible SVG: fixed ids, text kept as text (searchable, and readable by tests), no metadata.
SVG_STYLE = {"svg.hashsalt": "fairbench", "svg.fonttype": "none"}
NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


def grid_filename(label: str) -> str:
    """The file name of a method's sample grid in a results directory: ``<label slug>.png``.

    Characters outside ``[A-Za-z0-9._=-]`` become ``_`` (``attribute_switching(tau=224)`` ->
    ``attribute_switching_tau=224.png``). Whatever writes or reads sample grids uses this name.
    """
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_.")
    return f"{slug or 'method'}.png"


# ---------------------------------------------------------------------------------------------
# Sample grids.


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


def pixel_scale(side: int) -> int:
    """Whole image pixels per sample pixel: ``ceil(SAMPLE_SIDE_PX / side)``, at least 1."""
    return max(1, math.ceil(SAMPLE_SIDE_PX / side))


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every pixel becomes a ``scale x scale`` block."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def group_caption(requested: str, ends: Sequence[str], judged: Sequence[float] | None, names: Sequence[str]) -> str:
    """``requested light, ends heavy; judged light 3.0%, heavy 97.0%`` (the parts that are known)."""
    text = f"requested {requested}"
    if list(ends) != [requested]:
        text += f", ends {', '.join(ends)}"
    if judged is not None and len(judged) == len(names):
        text += "; judged " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in zip(names, judged))
    return text


def sample_grid(samples: torch.Tensor, requested: torch.Tensor, final: torch.Tensor, names: tuple[str, ...],
                title: str, path: Path, *, judged: dict[str, Sequence[float]] | None = None) -> Path:
    """One band per requested value: its first `PER_GROUP` samples, enlarged by `pixel_scale`
    without smoothing, under a line naming the request, the intended final value and the
    judge's distribution (`judged[name]`: probabilities in the order of `names`, when given).
    The PNG's ``Title`` and ``Description`` text hold the title and one caption line per band.

    The sample pixels are placed on the canvas unresampled (``figimage`` at the saving dpi),
    so each is an exact block of the PNG.
    """
    groups = [a for a in range(len(names)) if bool((requested == a).any())]
    scale = pixel_scale(int(samples.shape[-1]))
    bands = []
    for a in groups:
        rows = torch.nonzero(requested == a).flatten()[:PER_GROUP]
        image = mosaic(samples[rows])
        image = np.repeat(image, 3, axis=2) if image.shape[-1] == 1 else image
        ends = sorted({names[int(v)] for v in final[rows]})
        caption = group_caption(names[a], ends, (judged or {}).get(names[a]), names)
        bands.append((caption, upscale(image, scale)))
    width = 2 * GRID_MARGIN_PX + max(image.shape[1] for _, image in bands)
    height = GRID_TITLE_PX + sum(GRID_LABEL_PX + image.shape[0] + GRID_MARGIN_PX for _, image in bands)
    figure = Figure(figsize=(width / GRID_DPI, height / GRID_DPI), dpi=GRID_DPI)
    FigureCanvasAgg(figure)
    figure.text(GRID_MARGIN_PX / width, 1 - 6 / height, title, fontsize=11, va="top")
    top = GRID_TITLE_PX  # pixels from the top edge
    for caption, image in bands:
        figure.text(GRID_MARGIN_PX / width, 1 - (top + 3) / height, caption, fontsize=10, va="top")
        top += GRID_LABEL_PX
        figure.figimage(image, xo=GRID_MARGIN_PX, yo=height - top - image.shape[0], origin="upper", resize=False)
        top += image.shape[0] + GRID_MARGIN_PX
    # The labels travel with the picture as PNG text, for the page to show as text.
    captions = "\n".join(caption for caption, _ in bands)
    figure.savefig(path, dpi=GRID_DPI, metadata={"Software": None, "Title": title, "Description": captions})
    return path


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


# ---------------------------------------------------------------------------------------------
# Tau-search curves.

CURVE_LABELS = {"reference": "D(tau)", "sweep": "epsilon(tau)", "direct": "discrepancy(tau)", "direct_mean": "gap(tau)"}


def _tau_panel(axis, curves: Sequence[tuple[object, object, Sequence[tuple[float, float]]]], search: str, title: str,
               band: Sequence[tuple[float, float]] | None = None) -> None:
    """`curves`: (seed, chosen tau, [(tau, value), ...]) per seed, drawn in one colour each;
    `band`: the sweep's interval per visited tau, shaded behind the first curve."""
    if band:
        axis.fill_between([tau for tau, _ in curves[0][2]], *zip(*band), alpha=0.25, linewidth=0, color=PALETTE[0])
    for index, (seed, chosen, points) in enumerate(curves):
        colour = PALETTE[index % len(PALETTE)]
        taus, values = zip(*points)
        (line,) = axis.plot(taus, values, marker="o", markersize=3, color=colour, label=f"seed {seed}: tau = {chosen}")
        line.set_gid(f"tau-curve-{index + 1}")
        if isinstance(chosen, (int, float)):
            axis.axvline(chosen, color=colour, linestyle="--", linewidth=1)
    axis.axhline(0.0, color="grey", linewidth=0.6)
    axis.set_xlabel("tau (training timestep)")
    axis.set_ylabel(CURVE_LABELS.get(search, f"{search} search curve"))
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)


def tau_curves(searches: list[tuple[str, dict]], path: Path) -> Path:
    """One panel per search: its curve (tau, value) and the chosen tau (dashed)."""
    figure = Figure(figsize=(5 * len(searches), 3.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(searches), squeeze=False)[0]
    for axis, (label, search) in zip(axes, searches):
        _tau_panel(axis, [(search.get("seed", 0), search["tau"], search["curve"])], search["search"], label, band=search.get("band"))
    figure.tight_layout()
    figure.savefig(path, dpi=120, metadata={"Software": None})
    return path


def tau_curve_figure(label: str, search: str, curves: Sequence[tuple[object, object, Sequence[tuple[float, float]]]]) -> Figure:
    """A method's tau search over its seeds: one curve per seed, its chosen tau dashed."""
    figure = Figure(figsize=(6.4, 3.6))
    _tau_panel(figure.subplots(), curves, search, f"{label} ({search} search)")
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------------------------
# Fairness and quality per method (the leaderboard's numbers).

Extent = tuple[float, float, float]  # (mean, low, high): an interval, or mean ± std


def _tradeoff_axis(axis, points: Sequence[tuple[str, Extent, Extent]], *, fairness: str, quality: str,
                   front: Sequence[str] = ()) -> None:
    """Numbered points with their intervals as bars; the non-dominated ones (`front`) filled and
    joined by the dashed front line (``gid="pareto-front"``), the others drawn hollow."""
    for index, (label, (xm, xl, xh), (ym, yl, yh)) in enumerate(points):
        colour = PALETTE[index % len(PALETTE)]
        bars = axis.errorbar([xm], [ym], xerr=[[xm - xl], [xh - xm]], yerr=[[ym - yl], [yh - ym]], fmt="o", color=colour,
                             markersize=6 if label in front else 5, elinewidth=1,
                             markerfacecolor=colour if label in front or not front else "white")
        bars.lines[0].set_gid(f"point-{index + 1}")  # the marker, findable in the SVG
        bars.lines[0].set_clip_on(False)  # a point at epsilon 0 is drawn whole on the axis
        axis.annotate(str(index + 1), (xm, ym), xytext=(5, 5), textcoords="offset points", color=colour, fontsize=9)
    on_front = sorted((x[0], y[0]) for label, x, y in points if label in front)
    if len(on_front) > 1:
        (line,) = axis.plot(*zip(*on_front), linestyle="--", color="grey", linewidth=1, zorder=0)
        line.set_gid("pareto-front")
    if fairness == "epsilon":
        axis.set_ylim(bottom=max(0.0, axis.get_ylim()[0]))
    direction = {"fid": " (lower is better)", "s_per_1000_samples": " (lower is better)"}.get(quality.split("@")[0], "")
    axis.set_xlabel(quality + direction)
    axis.set_ylabel(fairness)
    axis.grid(True, axis="y", color="#dddddd")


def tradeoff_figure(points: Sequence[tuple[str, Extent, Extent]], *, fairness: str, quality: str,
                    front: Sequence[str] = ()) -> Figure:
    """Fairness (y) against quality or cost (x), one numbered point per method with its intervals
    as bars, the non-dominated methods (`front`) filled and joined.

    Points are numbered in the order given (the page lists the names under the same numbers):
    full labels would collide inside the plot.
    """
    figure = Figure(figsize=(6.4, 3.6))
    _tradeoff_axis(figure.subplots(), points, fairness=fairness, quality=quality, front=front)
    figure.tight_layout()
    return figure


def pareto_figure(panels: Sequence[tuple[Sequence[tuple[str, Extent, Extent]], Sequence[str], str, str]],
                  title: str = "") -> Figure:
    """One panel per view (points, front, fairness name, x name), side by side, with a numbered
    key of the methods under them (the numbers of each panel's points)."""
    figure = Figure(figsize=(6.4 * len(panels), 3.6 + 0.2 * max(len(p[0]) for p in panels)))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (points, front, fairness, x) in zip(axes, panels):
        _tradeoff_axis(axis, points, fairness=fairness, quality=x, front=front)
        key = "\n".join(f"{i + 1}. {label}{' (non-dominated)' if label in front else ''}" for i, (label, _, _) in enumerate(points))
        axis.text(0.0, -0.2, key, transform=axis.transAxes, va="top", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def strip_figure(rows: Sequence[tuple[str, Extent]], name: str) -> Figure:
    """One row per method: the metric's mean as a dot, its interval (or ± std) as a bar."""
    figure = Figure(figsize=(6.4, 1.2 + 0.35 * len(rows)))
    axis = figure.subplots()
    for index, (label, (mean, low, high)) in enumerate(rows):
        colour = PALETTE[index % len(PALETTE)]
        axis.errorbar([mean], [index], xerr=[[mean - low], [high - mean]], fmt="o", color=colour, elinewidth=2)
    # Long labels are cut here (the page lists them in full): they would squeeze the axis away.
    axis.set_yticks(range(len(rows)), [label if len(label) <= 40 else label[:39] + "…" for label, _ in rows])
    axis.invert_yaxis()
    if name == "epsilon":
        axis.set_xlim(left=max(0.0, axis.get_xlim()[0]))
    axis.set_xlabel(name)
    axis.grid(True, axis="x", color="#dddddd")
    figure.tight_layout()
    return figure


def svg_data_uri(figure: Figure) -> str:
    """The figure as a ``data:image/svg+xml;base64,...`` URI (text kept as text, no metadata).

    As an ``<img>`` source the SVG is an image: it runs no script and loads nothing, whatever
    the text drawn in it.
    """
    FigureCanvasSVG(figure)
    buffer = io.BytesIO()
    with matplotlib.rc_context(SVG_STYLE):
        figure.savefig(buffer, format="svg", metadata=NO_METADATA)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# A run's figures.


def write_figures(out_dir: Path, runs: list[tuple[str, dict, tuple[str, ...]]]) -> list[Path]:
    """Draw the figures of finished runs from their records and shard files.

    `runs`: (label, record, attribute names) of each run to draw (the first seed of each
    method). Sample grids go to ``figures/<grid_filename(label)>``; all tau searches to
    ``figures/tau_search.png``.
    """
    folder = Path(out_dir) / "figures"
    paths, searches = [], []
    for label, record, names in runs:
        if "tau_search" in record:
            searches.append((label, record["tau_search"] | {"seed": record["spec"]["seed"]}))
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
                                 folder / grid_filename(label), judged=record["metrics"].get("judged_distribution")))
    if searches:
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(tau_curves(searches, folder / "tau_search.png"))
    return paths
