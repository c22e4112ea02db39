"""The published leaderboard: HTML page and Markdown from records, escaping, plots, grids."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fairbench.cli import main
from fairbench.config import parse_config
from fairbench.html_report import grid_filename, nice_ticks, render_html, write_html
from fairbench.leaderboard import leaderboard_frame, markdown_table, write_leaderboard
from fairbench.records import make_record, read_records, write_record
from fairbench.runner import run_benchmark

EVIL_LABEL = """<script>document.title="PWNED"</script>"dq" 'sq' <img src=x onerror="document.title='PWNED'"> [x](javascript:alert(1)) a|b `c` *d*"""
EVIL_BENCHMARK = "<b>bench</b> & 'co'"


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
    """Start tags, and the text of the leaderboard table's cells, from an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[dict]] = []
        self._cell: dict | None = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = {"value": attrs.get("data-value"), "text": ""}

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def columns(self) -> list[str]:
        return [a["data-key"] for t, a in self.tags if t == "th" and "data-key" in a]


def parse(page: str) -> Tree:
    tree = Tree()
    tree.feed(page)
    return tree


def test_table_holds_mean_std_and_interval_over_seeds():
    records = fixture_records()
    tree = parse(render_html(records))
    columns = tree.columns()
    assert columns[:3] == ["method", "n_seeds", "epsilon"]
    assert {"epsilon_ci_low", "epsilon_ci_high", "nfe_per_sample"} <= set(columns)
    by_method = {row[0]["text"]: row for row in tree.rows}
    for label in ("conditional", "switching", "mixing"):
        group = [r for r in records if r["label"] == label]
        eps = np.array([r["metrics"]["epsilon"] for r in group])
        cells = dict(zip(columns, by_method[label]))
        assert float(cells["epsilon"]["value"]) == pytest.approx(eps.mean(), abs=1e-15)
        assert cells["epsilon"]["text"].count("±") == 1
        low = np.mean([r["metrics"]["epsilon_ci"][0] for r in group])
        high = np.mean([r["metrics"]["epsilon_ci"][1] for r in group])
        assert float(cells["epsilon_ci_low"]["value"]) == pytest.approx(low, abs=1e-15)
        assert float(cells["epsilon_ci_high"]["value"]) == pytest.approx(high, abs=1e-15)
        assert cells["n_seeds"]["value"] == "2"
        # the std shown is the sample std over seeds (ddof=1), as in leaderboard.csv
        std = float(cells["epsilon"]["text"].split("±")[1])
        assert std == pytest.approx(eps.std(ddof=1), abs=1e-3)


def test_record_text_is_escaped_everywhere_in_the_page(tmp_path):
    records = [record(EVIL_LABEL, 0, 0.3, benchmark=EVIL_BENCHMARK, **{"<i>m</i>": 1.5}), record("plain", 0, 0.1, index=1)]
    records[0]["provenance"]["device"] = "<iframe src=//evil>"
    records[0]["tau_search"] = {"tau": 10, "search": "<svg onload=alert(1)>", "curve": [[-1, 1.0], [10, 0.0], [999, -1.0]]}
    page = render_html(records)
    for raw in ("<script>document", "<img src=x", "<b>bench", "<iframe", "<svg onload", "<i>m</i>"):
        assert raw not in page
    tree = parse(page)
    tags = [t for t, _ in tree.tags]
    assert tags.count("script") == 1 and "img" not in tags and "iframe" not in tags and "b" not in tags
    assert not any(name.startswith("on") for _, attrs in tree.tags for name in attrs)
    # escaped, not mangled: the text read back is the label exactly
    assert [row[0]["text"] for row in tree.rows] == [EVIL_LABEL, "plain"]
    assert any(a.get("data-method") == EVIL_LABEL for t, a in tree.tags if t == "g")
    assert "<i>m</i>" in tree.columns()


def test_page_is_self_contained_and_its_policy_admits_only_its_own_script_and_style():
    page = render_html(fixture_records())
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"] * page.count("<svg")
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
    section = page.split('id="tradeoff"')[1].split('id="tau"')[0]
    return {
        m: (float(x), float(y))
        for m, x, y in re.findall(r'<g class="point" data-method="([^"]+)">.*?<circle cx="([\d.]+)" cy="([\d.]+)"', section)
    }


def test_tradeoff_plot_places_each_method_by_fid_and_epsilon():
    records = fixture_records(fid=True)
    page = render_html(records)
    centres = _point_centres(page)
    assert set(centres) == {"conditional", "switching", "mixing"}
    legend = re.search(r'<ol class="legend">(.*?)</ol>', page).group(1)
    assert re.findall(r"</svg> ([^<]+)</li>", legend) == list(centres)  # numbered in plotting order
    frame = leaderboard_frame(records).set_index("method")
    by_fid = sorted(centres, key=lambda m: centres[m][0])
    assert by_fid == list(frame["fid_mean"].sort_values().index)
    by_height = sorted(centres, key=lambda m: -centres[m][1])  # SVG y grows downwards
    assert by_height == list(frame["epsilon_mean"].sort_values().index)


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
    polylines = re.findall(r'<polyline points="([^"]+)"', figures[0][1])
    assert len(polylines) == 2 and all(len(p.split()) == len(curve) for p in polylines)
    xs = [float(pair.split(",")[0]) for pair in polylines[0].split()]
    assert xs == sorted(xs)
    assert "seed 0: tau 640" in figures[0][1]


def test_sample_grids_are_embedded_when_png(tmp_path):
    records = fixture_records()
    for r in records:
        write_record(tmp_path, r)
    image = Image.fromarray((np.arange(64, dtype=np.uint8).reshape(8, 8) * 4))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / grid_filename("switching")).write_bytes(buffer.getvalue())
    (tmp_path / "figures" / grid_filename("mixing")).write_text("not a png")
    page = write_html(tmp_path).read_text(encoding="utf-8")
    grids = re.findall(r'<figure class="grid" data-method="([^"]+)"><img src="data:image/png;base64,([^"]+)"', page)
    assert [m for m, _ in grids] == ["switching"]
    assert base64.b64decode(grids[0][1]) == buffer.getvalue()


def test_grid_filename_is_a_plain_file_name():
    assert grid_filename("attribute_switching(tau=224)") == "attribute_switching_tau=224.png"
    assert grid_filename("../../etc/passwd") == "etc_passwd.png"
    assert grid_filename("<>") == "method.png"


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-1.0, 999.0), (0.003, 0.0071), (12.5, 13.0), (-5e-4, 2e3)])
def test_nice_ticks_are_round_even_and_inside(low, high):
    ticks = nice_ticks(low, high)
    assert 2 <= len(ticks) <= 10
    assert all(low - 1e-12 <= t <= high + 1e-12 for t in ticks)
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-9


def test_markdown_escapes_record_text(tmp_path):
    for r in [record(EVIL_LABEL, 0, 0.3, benchmark=EVIL_BENCHMARK), record("plain", 0, 0.1, index=1)]:
        write_record(tmp_path, r)
    _, md_path = write_leaderboard(tmp_path)
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
    _, md_path = write_leaderboard(tmp_path)
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md_path.read_text())
    tree = parse(rendered)
    tags = {t for t, _ in tree.tags}
    assert "script" not in tags and "img" not in tags and "a" not in tags and "em" not in tags and "b" not in tags
    assert [row[0]["text"] for row in tree.rows] == [EVIL_LABEL, "plain"]


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
    assert page.count("<polyline") == 2
    assert page.count('<figure class="tau-curve"') == 1


def test_cli_leaderboard_refuses_a_directory_without_records(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench: error: ") and err.count("\n") == 1
