"""``fairbench site DIR... --out SITE``: one static site over several leaderboards.

Each DIR is a results directory (its ``records/`` and, when drawn, ``figures/``). The site holds:

- ``index.html``: the benchmarks (dataset, model, bias, seeds, methods, records, date, fairbench
  version) and the methods, with links to their pages and the downloads;
- ``benchmarks/<name>.html``: a benchmark's leaderboard page (headline, Pareto views, grouped
  details, tau curves, sample grids, provenance), its frame as ``benchmarks/<name>.csv`` and
  its Pareto figure as ``benchmarks/<name>-pareto.svg``;
- ``methods/<name>.html``: a method's definition (its docstring), citation where the method
  declares one, parameters (its declared keys and defaults), and its rows and sample grids in
  every benchmark;
- ``records.json`` and ``records.csv``: every record of every benchmark, as recorded (the CSV
  one row per record, its scalar metrics as columns);
- ``figures/<benchmark>/``: the sample grids, copied from each DIR.

Self-contained (no network at view time: no external script, style, font or image; a
Content-Security-Policy admits only the pages' own script and style, and images from the site
itself); every string from a record is escaped. Every page is rebuilt from the records; a SITE
that holds a previous site is replaced, anything else is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from .errors import FairbenchError
from .figures import grid_filename
from .html_report import page_html, report_body
from .html_report.grids import grids_html
from .html_report.table import escape, table_html
from .methods import METHODS
from .metrics import METRICS
from .publish import pareto_svg
from .records import atomic_write_text, read_records
from .report_model import DERIVED, Report, build_report

INDEX = "index.html"
MARKER = '<meta name="generator" content="fairbench site">'
IMAGES = "'self' data:"  # the policy's image sources: the site's own files and embedded plots


@dataclasses.dataclass(frozen=True)
class Benchmark:
    slug: str  # file name stem of its page and figures folder
    directory: Path
    report: Report


def slug(text: str, taken: set[str]) -> str:
    """A file name stem for `text` (``[A-Za-z0-9._=-]``), made unique against `taken` (and added to it)."""
    base = re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_.") or "item"
    name, n = base, 2
    while name.lower() in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name.lower())
    return name


def method_name(record: dict) -> str:
    """The registry name of a record's method (its label when the spec names none)."""
    method = record["spec"].get("method")
    return str(method.get("name")) if isinstance(method, dict) and method.get("name") else str(record["label"])


def load(directories: Sequence[Path]) -> list[Benchmark]:
    """Every directory's records, read once, and its report."""
    taken: set[str] = set()
    out = []
    for directory in directories:
        directory = Path(directory)
        report = build_report(read_records(directory), directory=directory)
        out.append(Benchmark(slug(directory.resolve().name, taken), directory, report))
    return out


def check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FairbenchError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        index = out / INDEX
        if not (index.is_file() and MARKER in index.read_text(encoding="utf-8", errors="replace")):
            raise FairbenchError(f"--out {str(out)!r} is a non-empty folder that holds no fairbench site; give an empty or new folder")


# ---------------------------------------------------------------------------------------------
# Pages.


def nav(depth: int) -> str:
    up = "../" * depth
    return (f'<nav><a href="{up}{INDEX}">All benchmarks</a><a href="{up}{INDEX}#methods">Methods</a>'
            f'<a href="{up}records.json">records.json</a><a href="{up}records.csv">records.csv</a></nav>')


def site_page(title: str, body: str, depth: int) -> str:
    page = page_html(title, body, nav=nav(depth), images=IMAGES)
    return page.replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\">\n" + MARKER, 1)


def grid_files(benchmark: Benchmark) -> dict[str, Path]:
    """Label -> its sample grid PNG in the benchmark's directory, where one was drawn."""
    out = {}
    for label in benchmark.report.labels:
        path = benchmark.directory / "figures" / grid_filename(label)
        if path.is_file():
            out[label] = path
    return out


def site_grids(benchmark: Benchmark, labels: Sequence[str], depth: int) -> str:
    up = "../" * depth
    return grids_html(labels, benchmark.directory,
                      source=lambda label, _: f"{up}figures/{benchmark.slug}/{grid_filename(label)}")


def index_page(benchmarks: Sequence[Benchmark], methods: dict[str, str], uses: dict[str, list[Benchmark]]) -> str:
    rows = []
    for b in benchmarks:
        s = b.report.summary
        rows.append(
            f'<tr><th scope="row"><a href="benchmarks/{escape(b.slug)}.html">{escape(s.benchmark)}</a></th>'
            f"<td>{escape(s.dataset)}</td><td>{escape(s.model)}</td><td>{escape(s.bias)}</td>"
            f"<td>{escape(', '.join(str(x) for x in s.seeds))}</td><td>{len(s.methods)}</td><td>{s.n_records}</td>"
            f"<td>{escape(s.date)}</td><td>{escape(s.version)}</td></tr>"
        )
    method_rows = []
    for name, page in methods.items():
        cls = METHODS.get(name)
        first = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ") if cls else "not a method of this fairbench"
        where = ", ".join(f'<a href="benchmarks/{escape(b.slug)}.html">{escape(b.report.summary.benchmark)}</a>' for b in uses[name])
        method_rows.append(f'<tr><th scope="row"><a href="methods/{escape(page)}.html">{escape(name)}</a></th>'
                           f"<td>{escape(first)}</td><td>{where}</td></tr>")
    n_records = sum(b.report.summary.n_records for b in benchmarks)
    body = f"""<p>{len(benchmarks)} benchmarks, {n_records} records, generated by <code>fairbench site</code> from the records
alone. Each benchmark's page leads with its headline table (fairness, balance, bias inheritance, quality, utility and
cost), then fairness against quality and cost with the non-dominated methods marked, then every other column by
group. Downloads: <a href="records.json">all records (JSON)</a>, <a href="records.csv">all records (CSV, one row per
record)</a>.</p>
<h2 id="benchmarks">Benchmarks</h2>
<div class="scroll"><table id="benchmarks-table" class="index"><thead><tr><th scope="col">benchmark</th><th scope="col">dataset</th>
<th scope="col">model</th><th scope="col">bias</th><th scope="col">seeds</th><th scope="col">methods</th><th scope="col">records</th>
<th scope="col">recorded</th><th scope="col">fairbench</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>
<h2 id="methods">Methods</h2>
<div class="scroll"><table id="methods-table" class="index"><thead><tr><th scope="col">method</th><th scope="col">definition</th>
<th scope="col">benchmarks</th></tr></thead><tbody>{''.join(method_rows)}</tbody></table></div>"""
    return site_page("fairbench leaderboards", body, 0)


def benchmark_page(benchmark: Benchmark, method_pages: dict[str, str], label_methods: dict[str, str]) -> str:
    report = benchmark.report
    downloads = (f'<p>Downloads: <a href="{escape(benchmark.slug)}.csv">this leaderboard (CSV)</a>'
                 + (f', <a href="{escape(benchmark.slug)}-pareto.svg">Pareto figure (SVG)</a>' if report.pareto else "")
                 + ".</p>")
    body = downloads + report_body(
        report, grids=site_grids(benchmark, report.labels, 1),
        method_href=lambda label: f"../methods/{method_pages[label_methods[label]]}.html",
    )
    return site_page(f"Leaderboard: {escape(report.summary.benchmark)}", body, 1)


def parameters_html(name: str) -> str:
    cls = METHODS.get(name)
    if cls is None:
        return "<p>Not a method of this fairbench: no declared parameters.</p>"
    fields = [f for f in dataclasses.fields(cls.Params)] if dataclasses.is_dataclass(cls.Params) else []
    if not fields:
        return "<p>None (any method also takes <code>label</code>).</p>"
    needs = "; ".join(f"{escape(capability)} ({'always' if parameter is None else f'when {escape(parameter)} asks for it'})"
                      for capability, parameter in getattr(cls, "requires", {}).items())
    needs_html = f"<p>Needs of the model or run: {needs}.</p>" if needs else ""
    rows = []
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else ("required" if f.default_factory is dataclasses.MISSING else f.default_factory())
        sweep = "yes" if f.name in getattr(cls, "sweepable", ()) else ""
        rows.append(f"<tr><th scope=\"row\"><code>{escape(f.name)}</code></th><td>{escape(getattr(f.type, '__name__', f.type))}</td>"
                    f"<td>{escape(default)}</td><td>{sweep}</td></tr>")
    return ('<table class="index"><thead><tr><th scope="col">key</th><th scope="col">type</th><th scope="col">default</th>'
            f'<th scope="col">sweepable</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            "<p>Any method also takes <code>label</code>.</p>" + needs_html)


def definition_html(name: str) -> str:
    cls = METHODS.get(name)
    if cls is None:
        return "<p>No method of this name is registered in this fairbench; the rows below are as recorded.</p>"
    paragraphs = [p.strip() for p in (inspect.getdoc(cls) or "").split("\n\n") if p.strip()]
    text = "".join(f"<p>{escape(' '.join(p.split()))}</p>" for p in paragraphs) or "<p>No definition written.</p>"
    citation = getattr(cls, "citation", None)
    if citation:
        text += f"<p>Citation: <cite>{escape(citation)}</cite></p>"
    return text


def method_page(name: str, benchmarks: Sequence[Benchmark], label_methods: dict[str, dict[str, str]]) -> str:
    sections = []
    for index, b in enumerate(benchmarks):
        labels = [label for label in b.report.labels if label_methods[b.slug].get(label) == name]
        if not labels:
            continue
        frame = b.report.frame[b.report.frame["method"].astype(str).isin(labels)]
        params = []
        for label in labels:
            recorded = next(r for r in b.report.records if str(r["label"]) == label)
            given = recorded["spec"].get("method_params", recorded["spec"].get("method"))
            params.append(f"<li><strong>{escape(label)}</strong>: <code>{escape(json.dumps(given, sort_keys=True))}</code></li>")
        table = table_html(b.report, b.report.headline, table_id=f"rows-{index}", frame=frame)
        sections.append(
            f'<section class="group"><h3><a href="../benchmarks/{escape(b.slug)}.html">{escape(b.report.summary.benchmark)}</a></h3>'
            f'<div class="scroll">{table}</div><p>Parameters as recorded:</p><ul>{"".join(params)}</ul>'
            f"{site_grids(b, labels, 1)}</section>"
        )
    body = (f'<h2 id="definition">Definition</h2>{definition_html(name)}'
            f'<h2 id="parameters">Parameters</h2>{parameters_html(name)}'
            f'<h2 id="results">Results in every benchmark</h2>{"".join(sections)}')
    return site_page(f"Method: {escape(name)}", body, 1)


# ---------------------------------------------------------------------------------------------
# Downloads.


def records_json(benchmarks: Sequence[Benchmark]) -> str:
    data = {"leaderboards": [
        {"name": b.slug, "benchmark": b.report.summary.benchmark,
         "records": [_as_recorded(r) for r in b.report.records]}
        for b in benchmarks
    ]}
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _as_recorded(record: dict) -> dict:
    """The record without the metrics a report derives (the download is what was recorded)."""
    return {**record, "metrics": {k: v for k, v in record["metrics"].items() if k not in DERIVED}}


def records_csv(benchmarks: Sequence[Benchmark]) -> str:
    fixed = ["leaderboard", "benchmark", "label", "method", "seed", "spec_hash"]
    names: list[str] = []
    rows = []
    for b in benchmarks:
        for record in b.report.records:
            metrics = {k: v for k, v in _as_recorded(record)["metrics"].items()
                       if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
            for key in metrics:
                if key not in names:
                    names.append(key)
            rows.append({"leaderboard": b.slug, "benchmark": record["spec"].get("benchmark"), "label": record["label"],
                         "method": method_name(record), "seed": record["spec"].get("seed"),
                         "spec_hash": record.get("spec_hash")} | metrics)
    known = [n for n in METRICS if n in names]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fixed + known + [n for n in names if n not in known], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------


def build_site(directories: Sequence[Path], out: Path) -> list[Path]:
    """Write the site of `directories` under `out`; returns the pages written."""
    out = Path(out)
    # `fairbench site leaderboards/* --out leaderboards/site`: the site is not one of its benchmarks
    directories = [d for d in directories if Path(d).resolve() != out.resolve()]
    if not directories:
        raise FairbenchError("fairbench site needs at least one results directory besides --out")
    check_output(out)
    benchmarks = load(directories)  # everything read and checked before anything is written
    taken: set[str] = set()
    label_methods = {b.slug: {str(r["label"]): method_name(r) for r in b.report.records} for b in benchmarks}
    uses: dict[str, list[Benchmark]] = {}
    for b in benchmarks:
        for name in dict.fromkeys(label_methods[b.slug].values()):
            uses.setdefault(name, []).append(b)
    method_pages = {name: slug(name, taken) for name in uses}

    for folder in ("benchmarks", "methods", "figures"):  # a previous site's pages go
        shutil.rmtree(out / folder, ignore_errors=True)
    written = []
    for b in benchmarks:
        for label, path in grid_files(b).items():
            target = out / "figures" / b.slug / grid_filename(label)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        pages = {f"{b.slug}.html": benchmark_page(b, method_pages, label_methods[b.slug]),
                 f"{b.slug}.csv": b.report.frame.to_csv(index=False)}
        svg = pareto_svg(b.report)
        if svg is not None:
            pages[f"{b.slug}-pareto.svg"] = svg
        for name, text in pages.items():
            atomic_write_text(out / "benchmarks" / name, text)
            written.append(out / "benchmarks" / name)
    for name, page in method_pages.items():
        path = out / "methods" / f"{page}.html"
        atomic_write_text(path, method_page(name, benchmarks, label_methods))
        written.append(path)
    atomic_write_text(out / "records.json", records_json(benchmarks))
    atomic_write_text(out / "records.csv", records_csv(benchmarks))
    atomic_write_text(out / INDEX, index_page(benchmarks, method_pages, uses))
    return [out / INDEX, *written, out / "records.json", out / "records.csv"]
