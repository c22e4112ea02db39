"""`fairbench site`: the downloads hold every record as recorded, the pages link what exists,
and bad input is refused before anything is written (the pages in a browser: test_browser.py)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from fairbench.cli import main
from fairbench.records import read_records, write_record
from test_report import fixture_records


@pytest.fixture()
def runs(tmp_path) -> list[Path]:
    out = []
    for name, labels in (("alpha", None), ("beta", 2)):
        directory = tmp_path / name
        records = fixture_records()
        records = [r for r in records if r["spec"]["method_index"] < labels] if labels else records
        for record in records:
            record["spec"]["benchmark"] = name
            write_record(directory, record)
        out.append(directory)
    return out


def test_site_downloads_hold_every_record_as_recorded(runs, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["site", *map(str, runs), "--out", str(site)]) == 0
    assert "index.html" in capsys.readouterr().out
    data = json.loads((site / "records.json").read_text())
    assert [b["name"] for b in data["leaderboards"]] == ["alpha", "beta"]
    for entry, directory in zip(data["leaderboards"], runs):
        assert entry["records"] == read_records(directory)  # nothing derived or dropped
    rows = list(csv.DictReader((site / "records.csv").open()))
    assert len(rows) == sum(len(read_records(d)) for d in runs)
    first = read_records(runs[0])[0]
    row = next(r for r in rows if r["spec_hash"] == first["spec_hash"] and r["leaderboard"] == "alpha")
    assert float(row["epsilon"]) == first["metrics"]["epsilon"] and row["method"] == first["spec"]["method"]["name"]
    assert "s_per_1000_samples" not in rows[0]
    # a page per benchmark and per method name; every relative link points at a file of the site
    assert sorted(p.name for p in (site / "benchmarks").glob("*.html")) == ["alpha.html", "beta.html"]
    names = {r["spec"]["method"]["name"] for r in read_records(runs[0])}
    assert {p.stem for p in (site / "methods").glob("*.html")} == {re.sub(r"[^A-Za-z0-9._=-]+", "_", n) for n in names}
    for page in site.rglob("*.html"):
        for href in re.findall(r'href="([^"#]+)', page.read_text()):
            assert (page.parent / href).resolve().is_file(), (page, href)


def test_site_rebuilds_over_itself_and_refuses_other_folders(runs, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["site", *map(str, runs), "--out", str(site)]) == 0
    assert main(["site", str(runs[0]), "--out", str(site)]) == 0  # a previous site is replaced
    assert main(["site", str(runs[0]), str(site), "--out", str(site)]) == 0  # as a shell glob gives it: not a benchmark
    assert sorted(p.name for p in (site / "benchmarks").glob("*.html")) == ["alpha.html"]
    capsys.readouterr()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for argv, words in [
        ([str(runs[0]), "--out", str(other)], "holds no fairbench site"),
        ([str(runs[0]), "--out", str(a_file)], "is a file"),
        ([str(runs[0]), str(tmp_path / "missing"), "--out", str(tmp_path / "new")], "missing"),
    ]:
        assert main(["site", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fairbench: error: ") and words in err and err.count("\n") == 1
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"] and not (tmp_path / "new").exists()
