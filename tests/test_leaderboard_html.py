"""The published leaderboard: HTML page and Markdown from records, escaping, plots, grids.

Plots are drawn by `fairbench.figures` and embedded as SVG images; the tests decode them and
read the drawn marks (by their ids) back, so they check what a reader sees.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fairbench.cli import main
from fairbench.config import parse_config
from fairbench.figures import pixel_scale, sample_grid, upscale
from fairbench.html_report import grid_filename, render_html as render_report
from fairbench.leaderboard import leaderboard_frame, markdown_table
from fairbench.metrics import METRICS
from fairbench.publish import write_leaderboard
from fairbench.report_model import build_report, pareto_front, with_derived
from fairbench.records import make_record, read_records, write_record
from fairbench.runner import run_benchmark

EVIL_LABEL = """<script>document.title="PWNED"</script>"dq" 'sq' <img src=x onerror="document.title='PWNED'"> [x](javascript:alert(1)) a|b `c` *d*"""
EVIL_BENCHMARK = "<b>bench</b> & 'co'"


def render_html(records: list[dict]) -> str:
    return render_report(build_report(records))


def record(label: str, seed: int, epsilon: float, *, index: int = 0, benchmark: str = "bench", **metrics) -> dict:
    spec = {"benchmark": benchmark, "method": {"name": label}, "method_index": index, "seed": seed}
    values = {"epsilon": epsilon, "epsilon_ci": [max(0.0, epsilon - 0.02), epsilon + 0.02], "nfe_per_sample": 50.0}
    values.update(metrics)
    prov = {"device": "cpu", "git_sha": "abc", "platform": "test", "seed": seed, "batch_size": 8, "versions": {"fairbench": "0.1.0"}}
    return make_record(spec=spec, label=label, metrics=values, provenance=prov)


def fixture_records(*, fid: bool = False) -> list[dict]:
    """Three methods over two seeds, with distinct epsilon (and fid) per method."""
    table = {"conditional": (0.70, 0.72, 10.0), "switching": (0.02, 0.04, 12.0), "mixing": (0.01, 0.0, 30.0)}
    records = []
    for index, (label, (e0, e1, f)) in enumerate(table.items()):
        for seed, eps in ((0, e0), (1, e1)):
            extra = {"fid": f + seed} if fid else {}
            records.append(record(label, seed, eps, index=index, **extra))
    return records


class Tree(HTMLParser):
    """Start tags, and per table (by id) its column keys and the text of its body's cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.tables: dict[str, dict] = {}
        self._table: dict | None = None
        self._cell: dict | None = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", ""), {"columns": [], "rows": []})
        elif tag == "th" and "data-key" in attrs and self._table is not None:
            self._table["columns"].append(attrs["data-key"])
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._table["rows"].append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = {"value": attrs.get("data-value"), "text": ""}

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            self._table["rows"][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    @property
    def rows(self) -> list[list[dict]]:
        """The headline table's rows."""
        return self.tables["leaderboard"]["rows"]

    def columns(self, table: str = "leaderboard") -> list[str]:
        return self.tables[table]["columns"]

    def all_columns(self) -> list[str]:
        return [key for table in self.tables.values() for key in table["columns"]]


def parse(page: str) -> Tree:
    tree = Tree()
    tree.feed(page)
    return tree


SVG = "{http://www.w3.org/2000/svg}"


def embedded_svgs(html: str) -> list[ElementTree.Element]:
    """The SVG images embedded in a piece of the page, parsed (each must be well-formed XML)."""
    return [ElementTree.fromstring(base64.b64decode(data)) for data in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)]


def by_id(svg: ElementTree.Element, prefix: str) -> dict[str, ElementTree.Element]:
    return {g.get("id"): g for g in svg.iter(f"{SVG}g") if g.get("id", "").startswith(prefix)}


def marker(group: ElementTree.Element) -> tuple[float, float]:
    """Where a plotted marker sits (SVG coordinates: y grows downwards)."""
    use = next(group.iter(f"{SVG}use"))
    return float(use.get("x")), float(use.get("y"))


def path_points(group: ElementTree.Element) -> list[tuple[float, float]]:
    d = next(group.iter(f"{SVG}path")).get("d")
    return [(float(x), float(y)) for x, y in re.findall(r"[ML] ([-\d.]+) ([-\d.]+)", d)]


def svg_text(svg: ElementTree.Element) -> str:
    return " ".join("".join(t.itertext()) for t in svg.iter(f"{SVG}text"))


def test_table_holds_mean_std_and_interval_over_seeds():
    records = fixture_records()
    tree = parse(render_html(records))
    columns = tree.columns()
    assert columns == ["method", "epsilon", "nfe_per_sample"]  # the headline metrics these records have
    by_method = {row[0]["text"]: row for row in tree.rows}
    for label in ("conditional", "switching", "mixing"):
        group = [r for r in records if r["label"] == label]
        eps = np.array([r["metrics"]["epsilon"] for r in group])
        cells = dict(zip(columns, by_method[label]))
        assert float(cells["epsilon"]["value"]) == pytest.approx(eps.mean(), abs=1e-15)
        shown, bounds = cells["epsilon"]["text"].split("[")
        assert shown.count("±") == 1
        low = np.mean([r["metrics"]["epsilon_ci"][0] for r in group])
        high = np.mean([r["metrics"]["epsilon_ci"][1] for r in group])
        assert [float(b) for b in bounds.rstrip("]").split(",")] == pytest.approx([low, high], abs=5e-4)
        # the std shown is the sample std over seeds (ddof=1), as in leaderboard.csv
        std = float(shown.split("±")[1])
        assert std == pytest.approx(eps.std(ddof=1), abs=1e-3)


RICH = {"epsilon_p_value": 0.01, "fd": 0.2, "kl_uniform": 0.05, "target_gap": 0.3, "target_gap_null": 0.05,
        "fid": 12.0, "kid": 0.5, "fid_features": "raw", "utility_fraction": 0.9, "utility_accuracy": 0.8,
        "samples_per_s": 250.0, "wall_s": 4.0, "tau": 300, "tau_search_nfe": 1000}


def test_headline_first_then_one_detail_table_per_registry_group():
    records = [record(label, seed, eps, index=i, **RICH) for i, (label, eps) in enumerate([("a", 0.5), ("b", 0.1)])
               for seed in (0, 1)]
    tree = parse(render_html(records))
    assert tree.columns() == ["method", "epsilon", "fd", "target_gap", "fid@raw", "utility_fraction", "nfe_per_sample",
                              "s_per_1000_samples"]
    assert len(tree.columns()) <= 9
    headline = set(tree.columns()[1:])
    details = {key: table["columns"][1:] for key, table in tree.tables.items() if key.startswith("details-")}
    assert list(details) == ["details-fairness", "details-balance", "details-inheritance", "details-quality",
                             "details-utility", "details-cost", "details-search"]
    for key, columns in details.items():
        assert columns and not headline & set(columns)  # every other column, once
        assert {METRICS[c.split("@")[0]].group for c in columns} == {key.removeprefix("details-")}
    # seconds per 1000 samples is derived from each record's rate
    cells = dict(zip(tree.columns(), tree.rows[0]))
    assert float(cells["s_per_1000_samples"]["value"]) == pytest.approx(4.0)


def with_rank_groups(records: list[dict], **letters: list[str]):
    """The report of `records` with ``<column>_group`` letters in its frame, as paired comparisons give them."""
    derived = [with_derived(r) for r in records]
    frame = leaderboard_frame(derived).assign(**{f"{key}_group": value for key, value in letters.items()})
    return build_report(derived, frame=frame)


def test_rank_groups_render_beside_their_metric_when_the_frame_has_them():
    page = render_report(with_rank_groups(fixture_records(), epsilon=["a", "b", "b"]))
    tree = parse(page)
    assert "epsilon_group" not in tree.all_columns()  # letters sit in the metric's cell, not a column of their own
    texts = {row[0]["text"]: dict(zip(tree.columns(), row))["epsilon"]["text"] for row in tree.rows}
    assert texts["conditional"].endswith(" a") and texts["switching"].endswith(" b") and texts["mixing"].endswith(" b")
    assert "rank group" in page
    assert "rank group" not in render_html(fixture_records())  # no letters, no note


def test_record_text_is_escaped_everywhere_in_the_page(tmp_path):
    records = [record(EVIL_LABEL, 0, 0.3, benchmark=EVIL_BENCHMARK, **{"<i>m</i>": 1.5}), record("plain", 0, 0.1, index=1)]
    records[0]["provenance"]["device"] = "<iframe src=//evil>"
    records[0]["tau_search"] = {"tau": 10, "search": "<svg onload=alert(1)>", "curve": [[-1, 1.0], [10, 0.0], [999, -1.0]]}
    page = render_html(records)
    for raw in ("<script>document", "<img src=x", "<b>bench", "<iframe", "<svg onload", "<i>m</i>"):
        assert raw not in page
    tree = parse(page)
    tags = [t for t, _ in tree.tags]
    assert tags.count("script") == 1 and "iframe" not in tags and "b" not in tags
    assert not any(name.startswith("on") for _, attrs in tree.tags for name in attrs)
    # the only images are the page's own plots, as data URIs (an SVG image runs no script)
    images = [attrs for t, attrs in tree.tags if t == "img"]
    assert images and all(a["src"].startswith("data:image/svg+xml;base64,") and a["class"] == "plot" for a in images)
    # escaped, not mangled: the text read back is the label exactly, in the table and in the plots
    assert [row[0]["text"] for row in tree.rows] == [EVIL_LABEL, "plain"]
    assert any(a.get("data-method") == EVIL_LABEL for t, a in tree.tags if t == "figure")
    assert "<i>m</i>" in tree.columns("details-other")  # a metric the registry does not know: its own table
    svgs = embedded_svgs(page)
    assert not any(element.tag in (f"{SVG}script", f"{SVG}foreignObject") for svg in svgs for element in svg.iter())
    assert any(EVIL_LABEL in svg_text(svg) for svg in svgs)


def test_page_is_self_contained_and_its_policy_admits_only_its_own_script_and_style():
    page = render_html(fixture_records())
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert re.findall(r"https?://[^\s\"'<>]+", page) == []
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert sources and all(src.startswith("data:image/svg+xml;base64,") for src in sources)
    for data in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page):
        svg = base64.b64decode(data).decode()
        # namespaces and the DTD name only; nothing is fetched (an image loads nothing anyway)
        assert set(re.findall(r"https?://[^\s\"'<>]+", svg)) <= {
            "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink", "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"}
        assert not re.search(r"<image|xlink:href=\"(?!#)", svg)
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in policy
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    for text in (script, style):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy


def test_without_fid_the_page_says_so_and_invents_no_quality_axis():
    page = render_html(fixture_records())
    assert 'id="no-quality"' in page and "No record has <code>fid</code>" in page
    assert "fid (lower is better)" not in page


def _point_centres(page: str) -> dict[str, tuple[float, float]]:
    """Method -> where its numbered point is drawn, read from the embedded SVG."""
    section = page.split('id="tradeoff"')[1].split('id="tradeoff-cost"')[0]
    (svg,) = embedded_svgs(section)
    legend = re.search(r'<ol class="legend">(.*?)</ol>', section).group(1)
    methods = re.findall(r'<li data-method="([^"]+)"', legend)  # numbered as the points
    points = by_id(svg, "point-")
    assert len(points) == len(methods)
    return {method: marker(points[f"point-{number}"]) for number, method in enumerate(methods, start=1)}


def test_tradeoff_plot_places_each_method_by_fid_and_epsilon():
    records = fixture_records(fid=True)
    page = render_html(records)
    centres = _point_centres(page)
    assert list(centres) == ["conditional", "switching", "mixing"]  # numbered in leaderboard order
    frame = leaderboard_frame(records).set_index("method")
    by_fid = sorted(centres, key=lambda m: centres[m][0])
    assert by_fid == list(frame["fid_mean"].sort_values().index)
    by_height = sorted(centres, key=lambda m: -centres[m][1])  # SVG y grows downwards
    assert by_height == list(frame["epsilon_mean"].sort_values().index)
    assert "fid (lower is better)" in svg_text(embedded_svgs(page.split('id="tradeoff"')[1])[0])


def brute_force_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Non-dominated labels (both coordinates lower is better), by the definition."""
    return {a for a, (x, y) in points.items()
            if not any(u <= x and v <= y and (u, v) != (x, y) for b, (u, v) in points.items() if b != a)}


def test_pareto_front_matches_its_definition_on_random_points():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 9))
        values = rng.integers(0, 5, size=(n, 2)).astype(float)  # small integers: ties and duplicates happen
        points = {f"m{i}": (x, y) for i, (x, y) in enumerate(values)}
        front = pareto_front([(label, x, y) for label, (x, y) in points.items()])
        assert set(front) == brute_force_front(points)
        assert front == [label for label in points if label in front]  # row order kept
    # a higher-is-better axis flips: (1, 5) beats (1, 3) when y is higher-better
    assert pareto_front([("a", 1, 5), ("b", 1, 3)], y_direction="higher") == ["a"]
    assert pareto_front([("a", 1, 5), ("b", 1, 3)]) == ["b"]


def test_page_marks_the_non_dominated_methods_in_the_plot_and_its_legend():
    records = fixture_records(fid=True)  # epsilon / fid: conditional 0.71 / 10.5, switching 0.03 / 12.5, mixing 0.005 / 30.5
    page = render_html(records)
    section = page.split('id="tradeoff"')[1].split('id="tradeoff-cost"')[0]
    marked = dict(re.findall(r'<li data-method="([^"]+)" data-pareto="(true|false)"', section))
    assert marked == {"conditional": "true", "switching": "true", "mixing": "true"}  # each best on one axis or between
    records = [r for r in records if r["label"] != "mixing"] + [
        record("worse", seed, 0.5, index=3, fid=40.0) for seed in (0, 1)]  # dominated by switching on both
    section = render_html(records).split('id="tradeoff"')[1].split('id="tradeoff-cost"')[0]
    marked = dict(re.findall(r'<li data-method="([^"]+)" data-pareto="(true|false)"', section))
    assert marked == {"conditional": "true", "switching": "true", "worse": "false"}
    (svg,) = embedded_svgs(section)
    front = by_id(svg, "pareto-front")
    assert len(front) == 1 and len(path_points(front["pareto-front"])) == 2  # joins the two non-dominated points


def test_methods_missing_fid_are_listed_not_placed():
    records = fixture_records(fid=True)
    for r in records:
        if r["label"] == "mixing":
            del r["metrics"]["fid"]
    page = render_html(records)
    assert set(_point_centres(page)) == {"conditional", "switching"}
    assert "Without <code>fid</code> (not plotted): mixing." in page


def test_tau_curves_come_from_the_records():
    records = fixture_records()
    curve = [[-1, 0.5], [0, 0.49], [200, 0.2], [640, 0.01], [999, 0.4]]
    for r in records:
        if r["label"] == "switching":
            r["tau_search"] = {"tau": 640, "search": "reference", "curve": curve, "nfe": 10}
    page = render_html(records)
    figures = re.findall(r'<figure class="tau-curve" data-method="([^"]+)">(.*?)</figure>', page, re.S)
    assert [m for m, _ in figures] == ["switching"]
    (svg,) = embedded_svgs(figures[0][1])
    curves = by_id(svg, "tau-curve-")
    assert len(curves) == 2  # one per seed
    for group in curves.values():
        points = path_points(group)
        assert len(points) == len(curve)
        xs = [x for x, _ in points]
        assert xs == sorted(xs) and len(set(xs)) == len(xs)
        # the drawn heights order as the curve's values (SVG y grows downwards)
        ys = [y for _, y in points]
        assert np.argsort(ys, kind="stable").tolist() == np.argsort([-v for _, v in curve], kind="stable").tolist()
    assert "seed 0: tau 640" in figures[0][1] and "seed 0: tau = 640" in svg_text(svg)


JUDGED = {"light": [0.978, 0.022], "heavy": [0.09, 0.91]}


def digit_grid(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A sample grid of 8x8 one-channel images, 32 per requested value, as a run writes it."""
    samples = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    requested = torch.arange(64) % 2
    sample_grid(samples, requested, requested, ("light", "heavy"), "switching (seed 0)", path, judged=JUDGED)
    return samples, requested


def test_sample_grid_enlarges_every_sample_pixel_into_an_exact_block(tmp_path):
    samples, requested = digit_grid(tmp_path / "grid.png")
    scale = pixel_scale(8)
    assert scale == 5  # an 8x8 digit is 40 pixels wide
    image = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)
    # the first band's first sample: below the title and its caption line, inside the margin
    top, left = 26 + 22, 8
    block = image[top: top + 8 * scale, left: left + 8 * scale, 0]
    expected = upscale(((samples[0, 0].numpy() + 1) / 2 * 255)[:, :, None], scale)[:, :, 0]
    assert np.abs(block - expected).max() <= 1  # nearest neighbour: no smoothing between pixels
    blocks = block.reshape(8, scale, 8, scale)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every sample pixel a uniform 5x5 block
    # the second sample of the first band (requested light) sits one sample plus a gap to the right
    second = image[top: top + 8 * scale, left + 9 * scale: left + 17 * scale, 0]
    first_light = torch.nonzero(requested == 0).flatten()[1]
    assert np.abs(second[::scale, ::scale] - ((samples[first_light, 0].numpy() + 1) / 2 * 255)).max() <= 1


def test_sample_grids_are_embedded_at_their_size_with_request_and_judged_value(tmp_path):
    records = fixture_records()
    for r in records:
        write_record(tmp_path, r)
    (tmp_path / "figures").mkdir()
    digit_grid(tmp_path / "figures" / grid_filename("switching"))
    (tmp_path / "figures" / grid_filename("mixing")).write_text("not a png")
    page = write_leaderboard(tmp_path)["html"].read_text(encoding="utf-8")
    grids = re.findall(r'<figure class="grid" data-method="([^"]+)">(.*?)</figure>', page, re.S)
    assert [m for m, _ in grids] == ["switching"]
    data, width, height = re.search(r'<img src="data:image/png;base64,([^"]+)" width="(\d+)" height="(\d+)"', grids[0][1]).groups()
    png = base64.b64decode(data)
    assert png == (tmp_path / "figures" / grid_filename("switching")).read_bytes()
    assert Image.open(io.BytesIO(png)).size == (int(width), int(height))  # shown at its own size
    assert int(width) >= 16 * 8 * 5  # 16 digits a row, 40 pixels each
    caption = grids[0][1].split("<figcaption>")[1]
    assert "requested light; judged light 97.8%, heavy 2.2%" in caption
    assert "requested heavy; judged light 9.0%, heavy 91.0%" in caption and "switching (seed 0)" in caption
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert re.search(r"figure\.grid img \{[^}]*image-rendering: pixelated;[^}]*max-width: none", style)


def test_grid_filename_is_a_plain_file_name():
    assert grid_filename("attribute_switching(tau=224)") == "attribute_switching_tau=224.png"
    assert grid_filename("../../etc/passwd") == "etc_passwd.png"
    assert grid_filename("<>") == "method.png"


def test_markdown_escapes_record_text(tmp_path):
    for r in [record(EVIL_LABEL, 0, 0.3, benchmark=EVIL_BENCHMARK), record("plain", 0, 0.1, index=1)]:
        write_record(tmp_path, r)
    md_path = write_leaderboard(tmp_path)["md"]
    text = md_path.read_text(encoding="utf-8")
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "](javascript" not in text.replace("\\]", "")  # the link's brackets are escaped
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    cells = [len(re.split(r"(?<!\\)\|", row)) for row in rows]
    assert len(set(cells)) == 1  # the label's pipe does not open a cell


def test_markdown_renders_without_markup_from_records(tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    for r in [record(EVIL_LABEL, 0, 0.3, benchmark=EVIL_BENCHMARK), record("plain", 0, 0.1, index=1)]:
        write_record(tmp_path, r)
    md_path = write_leaderboard(tmp_path)["md"]
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md_path.read_text())
    tree = parse(rendered)
    tags = {t for t, _ in tree.tags}
    assert "script" not in tags and "img" not in tags and "a" not in tags and "em" not in tags and "b" not in tags
    assert [row[0]["text"] for row in tree.tables[""]["rows"][:2]] == [EVIL_LABEL, "plain"]  # the headline table


def test_markdown_of_plain_records_is_unchanged():
    frame = leaderboard_frame(fixture_records()[:2])
    assert markdown_table(frame) == (
        "| method | epsilon ↓ | nfe_per_sample ↓ |\n"
        "|---|---|---|\n"
        "| conditional | 0.710 ± 0.014 [0.690, 0.730] | 50 ± 0 |\n"
    )


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory) -> Path:
    """A small real run: the analytic Gaussian model, three methods, two seeds."""
    config = parse_config({
        "benchmark": {"name": "gaussian-small", "n_samples": 200, "seeds": [0, 1], "batch_size": 200},
        "model": {"kind": "gaussian", "means": [[-0.5, 0.0], [0.5, 0.0]], "std": 0.5},
        "sampler": {"scheduler": "ddim", "steps": 10},
        "methods": [
            {"name": "conditional"},
            {"name": "attribute_switching", "tau": "reference", "search_batch_size": 32},
            {"name": "embedding_mixing", "weight": 0.5},
        ],
        "metrics": {"bootstrap": 100},
    }, source="test")
    out = tmp_path_factory.mktemp("gaussian-run")
    run_benchmark(config, out, device="cpu", log=lambda message: None)
    return out


def test_cli_leaderboard_writes_csv_markdown_and_page(gaussian_run, capsys):
    assert main(["leaderboard", str(gaussian_run)]) == 0
    assert "leaderboard.html" in capsys.readouterr().out
    page = (gaussian_run / "leaderboard.html").read_text(encoding="utf-8")
    csv = pd.read_csv(gaussian_run / "leaderboard.csv")
    tree = parse(page)
    columns = tree.columns()
    for row in tree.rows:
        cells = dict(zip(columns, row))
        expected = csv[csv["method"] == cells["method"]["text"]].iloc[0]
        assert float(cells["epsilon"]["value"]) == pytest.approx(expected["epsilon_mean"], rel=1e-12)
    assert len(tree.rows) == len(csv) == 3
    # the reference search's curve: one polyline per seed, one point per candidate tau
    records = [r for r in read_records(gaussian_run) if "tau_search" in r]
    assert len(records) == 2
    assert page.count('<figure class="tau-curve"') == 1
    tau_section = page.split('id="tau"')[1].split('id="samples"')[0]
    (svg,) = embedded_svgs(tau_section)
    assert len(by_id(svg, "tau-curve-")) == 2  # one curve per seed
    # the Pareto figure: epsilon against FID and against seconds, one point per method in each panel
    figure = ElementTree.parse(gaussian_run / "figures" / "pareto.svg").getroot()
    assert len(by_id(figure, "point-")) == 3  # ids repeat per panel; every method is drawn
    assert sum(1 for g in figure.iter(f"{SVG}g") if g.get("id", "").startswith("point-")) == 2 * 3
    report = build_report(read_records(gaussian_run))
    assert [v.x.metric for v in report.pareto] == ["fid", "s_per_1000_samples"]
    text = svg_text(figure)
    for view in report.pareto:
        for label in view.front:
            assert f"{label} (non-dominated)" in text


def test_cli_leaderboard_refuses_a_directory_without_records(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench: error: ") and err.count("\n") == 1


def test_the_page_is_reproducible_byte_for_byte():
    # the plots carry no date or version and fixed SVG ids, so a regenerated page is identical
    records = fixture_records(fid=True)
    records[2]["tau_search"] = {"tau": 10, "search": "reference", "curve": [[-1, 1.0], [10, 0.0], [999, 0.5]]}
    assert render_html(records) == render_html(records)
