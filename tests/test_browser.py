"""The leaderboard page in a real headless browser (Debian's chromium).

One test loads the page with ``#sort=-epsilon`` and reads the DOM chromium dumps after the
page's script ran; the others drive chromium over the DevTools protocol (on a pipe, so no
port and no extra package) to click headers, to look for any trace of injected markup, and to
measure how large a sample grid is drawn.
Both skip, saying why, when no chromium is installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from fairbench.figures import grid_filename, sample_grid
from fairbench.publish import write_leaderboard
from fairbench.records import make_record, write_record

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
HANG_GUARD_S = 120  # a browser that never answers fails the test instead of hanging the suite

PAYLOAD = "<script>window.__pwned = 1; document.title = 'PWNED'</script>"
EVIL = f"""{PAYLOAD}"dq" 'sq' <img src=x onerror="window.__pwned = 2">"""
# label -> (epsilon per seed, tau or None); tau is absent for two methods (empty cells)
METHODS = {
    "conditional": ((0.70, 0.72), None),
    EVIL: ((0.30, 0.34), 500),
    "switching": ((0.02, 0.04), 640),
    "mixing": ((0.01, 0.00), None),
}


def _records() -> list[dict]:
    records = []
    for index, (label, (epsilons, tau)) in enumerate(METHODS.items()):
        for seed, eps in enumerate(epsilons):
            metrics = {"epsilon": eps, "epsilon_ci": [max(0.0, eps - 0.02), eps + 0.02]}
            if tau is not None:
                metrics["tau"] = tau
            spec = {"benchmark": "<b>bench</b>", "method": {"name": label}, "method_index": index, "seed": seed}
            records.append(make_record(spec=spec, label=label, metrics=metrics, provenance={"device": PAYLOAD}))
    return records


def _mean(label: str) -> float:
    return float(np.mean(METHODS[label][0]))


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("page")
    for record in _records():
        write_record(directory, record)
    # a sample grid of 8x8 digits, as a run draws it
    samples = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    requested = torch.arange(64) % 2
    (directory / "figures").mkdir()
    sample_grid(samples, requested, requested, ("light", "heavy"), "switching (seed 0)",
                directory / "figures" / grid_filename("switching"), judged={"light": [0.978, 0.022], "heavy": [0.09, 0.91]})
    return write_leaderboard(directory)["html"]


class Dom(HTMLParser):
    """Start tags, the title, and the text of the headline table's body cells, from a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self.title = ""
        self._in_body = self._in_cell = self._in_title = self._headline = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._headline = dict(attrs).get("id") == "leaderboard"
        if tag == "tbody" and self._headline:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_body:
            self.rows[-1].append("")
            self._in_cell = True
        elif tag == "title" and not self.title:  # the document's, not the SVG tooltips
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th"):
            self._in_cell = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif self._in_cell:
            self.rows[-1][-1] += data


def test_dumped_dom_has_the_values_sorted_as_the_url_asks(page, tmp_path):
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri() + "#sort=-epsilon"],
        capture_output=True, text=True, timeout=HANG_GUARD_S, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Dom()
    dom.feed(done.stdout)
    table = next(attrs for tag, attrs in dom.tags if tag == "table")
    assert table["data-sorted"] == "-epsilon"
    expected = sorted(METHODS, key=lambda m: (-_mean(m), list(METHODS).index(m)))
    assert [row[0] for row in dom.rows] == expected
    # values as recorded: mean ± sample std over the two seeds, the interval under it
    by_label = {row[0]: row for row in dom.rows}
    assert by_label["conditional"][1] == "0.710 ± 0.014[0.690, 0.730]"
    assert by_label["switching"][1] == "0.030 ± 0.014[0.010, 0.050]"
    # injected markup stayed text: one script (the page's), only the page's own images, the title untouched
    assert [tag for tag, _ in dom.tags].count("script") == 1
    images = [attrs for tag, attrs in dom.tags if tag == "img"]
    assert images and all(a["src"].startswith(("data:image/svg+xml;base64,", "data:image/png;base64,")) for a in images)
    assert not any(name.startswith("on") for _, attrs in dom.tags for name in attrs)
    assert dom.title == "Leaderboard: <b>bench</b>"
    assert EVIL in by_label


class DevTools:
    """Just enough of the Chrome DevTools protocol over ``--remote-debugging-pipe``."""

    def __init__(self, profile: Path) -> None:
        to_browser, self._writer = os.pipe()
        self._reader, from_browser = os.pipe()

        def wire() -> None:  # in the child: the protocol reads fd 3 and writes fd 4
            read_end = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 64)
            write_end = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 64)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
            preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._events: list[dict] = []
        self._id = 0
        self.session: str | None = None

    def _message(self) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._reader], [], [], HANG_GUARD_S)
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._reader, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the protocol pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, *, session: bool = True) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._writer, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, event: str) -> dict:
        while True:
            for index, message in enumerate(self._events):
                if message.get("method") == event:
                    return self._events.pop(index)
            self._events.append(self._message())

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (OSError, EOFError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._reader)
        os.close(self._writer)


ROW_LABELS = "Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(r => r.cells[0].textContent)"


def click(browser: DevTools, key: str, table: str = "leaderboard") -> list[str]:
    browser.evaluate(f"document.querySelector('#{table} th[data-key=\"{key}\"] button').click()")
    return browser.evaluate(ROW_LABELS.replace("#leaderboard", f"#{table}"))


def test_clicking_headers_sorts_and_injected_markup_never_runs(page, tmp_path):
    browser = DevTools(tmp_path / "profile")
    try:
        browser.open(page.as_uri())
        record_order = list(METHODS)
        assert browser.evaluate(ROW_LABELS) == record_order
        ascending = sorted(METHODS, key=lambda m: (_mean(m), record_order.index(m)))
        assert click(browser, "epsilon") == ascending
        assert browser.evaluate("document.querySelector('#leaderboard th[data-key=\"epsilon\"]').getAttribute('aria-sort')") == "ascending"
        assert click(browser, "epsilon") == sorted(METHODS, key=lambda m: (-_mean(m), record_order.index(m)))
        assert browser.evaluate("location.hash") == "#sort=-epsilon"
        # a detail table sorts by itself; empty cells sort last in both directions
        with_tau = [m for m in METHODS if METHODS[m][1] is not None]
        without = [m for m in METHODS if METHODS[m][1] is None]
        assert click(browser, "tau", "details-search") == sorted(with_tau, key=lambda m: METHODS[m][1]) + without
        assert click(browser, "tau", "details-search") == sorted(with_tau, key=lambda m: -METHODS[m][1]) + without
        assert browser.evaluate("location.hash") == "#sort=-epsilon"  # only the headline table's order is linkable
        assert click(browser, "method") == sorted(METHODS)
        # nothing injected ran or became markup
        assert browser.evaluate("typeof window.__pwned") == "undefined"
        assert browser.evaluate("document.title") == "Leaderboard: <b>bench</b>"
        assert browser.evaluate("document.scripts.length") == 1
        # the images are the page's plots and its one grid, all data URIs
        assert browser.evaluate("Array.from(document.images).every(i => /^data:image\\/(svg\\+xml|png);base64,/.test(i.src))")
        assert browser.evaluate("document.querySelectorAll('img.plot').length + document.querySelectorAll('figure.grid img').length") \
            == browser.evaluate("document.images.length")
        assert browser.evaluate("document.querySelectorAll('h1 b, td b, li script, iframe').length") == 0
        assert EVIL in browser.evaluate(ROW_LABELS)
    finally:
        browser.close()


def test_a_sample_grid_is_drawn_at_its_own_size_without_smoothing(page, tmp_path):
    browser = DevTools(tmp_path / "profile")
    try:
        browser.open(page.as_uri())
        grid = browser.evaluate(
            "(() => { const i = document.querySelector('figure.grid img'); const r = i.getBoundingClientRect();"
            " return {width: r.width, height: r.height, natural: [i.naturalWidth, i.naturalHeight],"
            " rendering: getComputedStyle(i).imageRendering, caption: i.closest('figure').innerText}; })()"
        )
        # one CSS pixel per PNG pixel, so an 8x8 digit (5x5 blocks per pixel) is 40 pixels wide on screen
        assert [grid["width"], grid["height"]] == grid["natural"]
        assert grid["width"] >= 16 * 8 * 5
        assert grid["rendering"] == "pixelated"
        assert "requested light; judged light 97.8%, heavy 2.2%" in grid["caption"]
        assert "requested heavy; judged light 9.0%, heavy 91.0%" in grid["caption"]
        # every plot is an image that loaded (a broken image has no natural size)
        assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    finally:
        browser.close()


# ---------------------------------------------------------------------------------------------
# The site over the published leaderboards (`fairbench site`), at a 1280-pixel-wide window.

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"
PUBLISHED = sorted(p for p in LEADERBOARDS.iterdir() if (p / "records").is_dir()) if LEADERBOARDS.is_dir() else []
WIDTH = 1280

PAGE_FACTS = """(() => {
  const table = document.getElementById('leaderboard');
  const box = table ? table.closest('.scroll') || table : null;
  return {
    h1: (document.querySelector('h1') || {}).textContent || '',
    pageWidth: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
    table: table ? {right: table.getBoundingClientRect().right, scroll: box.scrollWidth, client: box.clientWidth,
                    columns: table.tHead.rows[0].cells.length, rows: table.tBodies[0].rows.length} : null,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
    images: Array.from(document.images).map(i => ({src: i.getAttribute('src').slice(0, 40), ok: i.complete && i.naturalWidth > 0})),
    scripts: document.scripts.length,
    pwned: typeof window.__pwned,
  };
})()"""


def _goto(browser: DevTools, url: str) -> dict:
    browser.send("Page.navigate", {"url": url})
    browser.wait_for("Page.loadEventFired")
    return browser.evaluate(PAGE_FACTS)


def _crawl(site: Path, tmp_path: Path) -> dict[Path, dict]:
    """Every page reachable from the index, by following links: page -> its facts."""
    browser = DevTools(tmp_path / "profile")
    facts: dict[Path, dict] = {}
    try:
        browser.open("about:blank")
        browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        queue = [site / "index.html"]
        while queue:
            page = queue.pop()
            if page in facts:
                continue
            facts[page] = _goto(browser, page.as_uri())
            for href in facts[page]["links"]:
                target = href.split("#")[0]
                if target.endswith(".html"):
                    queue.append((page.parent / target).resolve())
    finally:
        browser.close()
    return facts


@pytest.fixture(scope="module")
def published_site(tmp_path_factory) -> Path:
    from fairbench.website import build_site

    if not PUBLISHED:
        pytest.skip("no published leaderboards in this checkout")
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(PUBLISHED, out)
    return out


def test_site_over_the_published_leaderboards_renders_every_page_and_every_link_resolves(published_site, tmp_path):
    facts = _crawl(published_site, tmp_path)
    benchmark_pages = sorted(p.name for p in facts if p.parent.name == "benchmarks")
    method_pages = sorted(p.name for p in facts if p.parent.name == "methods")
    assert benchmark_pages == sorted(p.name for p in (published_site / "benchmarks").glob("*.html"))
    assert len(benchmark_pages) == len(PUBLISHED)
    assert method_pages == sorted(p.name for p in (published_site / "methods").glob("*.html")) and method_pages
    for page, seen in facts.items():
        assert seen["h1"], page
        assert seen["scripts"] == 1 and seen["pwned"] == "undefined"
        # no horizontal scrolling of the page at 1280 px
        assert seen["pageWidth"] <= seen["viewport"] == WIDTH, (page, seen["pageWidth"])
        # every image (plots, copied sample grids) loaded under the page's policy
        assert all(image["ok"] for image in seen["images"]), (page, [i for i in seen["images"] if not i["ok"]])
        for href in seen["links"]:
            assert not href.startswith(("http:", "https:", "//")), (page, href)  # nothing from the network
            target, _, anchor = href.partition("#")
            path = (page.parent / target).resolve() if target else page
            assert path.is_file(), (page, href)
            if anchor and path.suffix == ".html":
                ids = facts[path]["ids"] if path in facts else []
                assert anchor in ids, (page, href)
    for page in (p for p in facts if p.parent.name == "benchmarks"):
        table = facts[page]["table"]
        # the headline table fits the window: at most 9 columns and nothing to scroll sideways
        assert table is not None and 2 <= table["columns"] <= 9 and table["rows"] >= 1, page
        assert table["scroll"] <= table["client"] and table["right"] <= WIDTH, (page, table)
    grids = [i for p in facts if p.parent.name == "methods" for i in facts[p]["images"] if i["src"].startswith("../figures/")]
    assert grids  # method pages show the copied sample grids


HOSTILE_METHOD = "<img src=x onerror=\"window.__pwned = 3\">"


def test_site_keeps_hostile_names_as_text(tmp_path):
    from fairbench.website import build_site

    directories = []
    for index, bench in enumerate(["<b>bench</b>", "plain"]):
        directory = tmp_path / f"run{index}"
        for record in _records():
            record["spec"]["benchmark"] = bench
            if record["label"] == "mixing":
                record["spec"]["method"]["name"] = HOSTILE_METHOD
            write_record(directory, record)
        directories.append(directory)
    site = tmp_path / "site"
    build_site(directories, site)
    facts = _crawl(site, tmp_path)
    assert len(facts) >= 1 + 2 + 1  # index, two benchmarks, the methods
    for page, seen in facts.items():
        assert seen["pwned"] == "undefined" and seen["scripts"] == 1, page
    browser = DevTools(tmp_path / "profile2")
    try:
        browser.open((site / "index.html").as_uri())
        text = browser.evaluate("document.body.innerText")
        assert "<b>bench</b>" in text and HOSTILE_METHOD in text
        assert browser.evaluate("document.querySelectorAll('td b, th b, img[src=x], iframe').length") == 0
        browser.send("Page.navigate", {"url": (site / "benchmarks" / "run0.html").as_uri()})
        browser.wait_for("Page.loadEventFired")
        assert browser.evaluate("document.title") == "Leaderboard: <b>bench</b>"
        assert EVIL in browser.evaluate(ROW_LABELS)
        assert browser.evaluate("typeof window.__pwned") == "undefined"
    finally:
        browser.close()
