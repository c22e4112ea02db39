"""The report model and its text writers: grouping from the metric registry, the headline
view, and golden files of the Markdown and CSV rendered from fixture records.

Golden files live in tests/data/golden/; after an intended change of the output, regenerate
them with ``FAIRBENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_report.py`` and read the diff.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from fairbench.cli import main
from fairbench.leaderboard import leaderboard_frame
from fairbench.metrics import METRIC_GROUPS, METRICS
from fairbench.records import make_record, read_records, write_record
from fairbench.report_model import build_report, seconds_per_1000, with_derived
from fairbench.writers.csv_view import render_csv
from fairbench.writers.latex import render_latex
from fairbench.writers.markdown import render_markdown

GOLDEN = Path(__file__).parent / "data" / "golden"

# label -> per seed: (epsilon, fd, target_gap, fid, utility_fraction, samples_per_s)
TABLE = {
    "conditional": [(0.79, 0.58, 0.55, 13.5, 0.96, 110.0), (0.81, 0.59, 0.56, 14.1, 0.97, 100.0)],
    "attribute_switching(tau=direct)": [(0.33, 0.06, 0.30, 26.0, 0.96, 105.0), (0.35, 0.07, 0.29, 26.4, 0.95, 95.0)],
    "embedding_mixing(weight=0.5)": [(0.0, 0.05, 0.06, 28.0, 0.97, 112.0), (0.01, 0.06, 0.07, 28.3, 0.96, 108.0)],
    "classifier guidance to unconditional": [(0.49, 0.20, 0.50, 10.2, 0.96, 77.0), (0.50, 0.21, 0.51, 10.6, 0.96, 75.0)],
}


def fixture_records() -> list[dict]:
    records = []
    for index, (label, seeds) in enumerate(TABLE.items()):
        for seed, (eps, fd, gap, fid, util, rate) in enumerate(seeds):
            metrics = {
                "epsilon": eps, "epsilon_ci": [max(0.0, eps - 0.05), eps + 0.05], "epsilon_p_value": 0.001 if eps > 0.1 else 0.6,
                "fd": fd, "kl_uniform": fd / 2, "target_gap": gap, "target_gap_ci": [gap - 0.04, gap + 0.04],
                "fid": fid, "kid": fid / 20, "fid_features": "raw", "utility_fraction": util, "utility_accuracy": util * 0.98,
                "nfe_per_sample": 50, "wall_s": 1000 / rate, "samples_per_s": rate, "peak_mem_mb": 90.0 + index,
            }
            if "tau" in label:
                metrics |= {"tau": 200 + 10 * seed, "tau_search_nfe": 47360}
            spec = {"benchmark": "digits", "method": {"name": label.split("(")[0]}, "method_index": index, "seed": seed,
                    "dataset": {"name": "digits", "attribute": "stroke", "target": "digit", "bias": 0.8},
                    "model": {"kind": "unet"}}
            prov = {"device": "cpu", "git_sha": "abc", "platform": "test", "seed": seed, "batch_size": 8,
                    "versions": {"fairbench": "0.1.0"}, "date": f"2026-12-0{seed + 1}T10:00:00+00:00"}
            records.append(make_record(spec=spec, label=label, metrics=metrics, provenance=prov))
    return records


RANK_GROUPS = {"epsilon": ["d", "b", "a", "c"], "fd": ["c", "a", "a", "b"], "fid@raw": ["ab", "c", "c", "a"]}


def fixture_report(*, groups: bool = True):
    records = [with_derived(r) for r in fixture_records()]
    frame = leaderboard_frame(records)
    if groups:
        frame = frame.assign(**{f"{key}_group": letters for key, letters in RANK_GROUPS.items()})
    return build_report(records, frame=frame)


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("FAIRBENCH_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"no golden file {path}: run with FAIRBENCH_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; if intended, regenerate with FAIRBENCH_UPDATE_GOLDEN=1"


def test_every_registered_metric_declares_a_known_group():
    missing = [name for name, info in METRICS.items() if info.group not in METRIC_GROUPS]
    assert not missing, f"metrics without a group of METRIC_GROUPS: {missing}"
    assert [n for n, info in METRICS.items() if info.headline] == [
        "epsilon", "fd", "target_gap", "fid", "utility_fraction", "nfe_per_sample", "s_per_1000_samples"]


def test_grouping_follows_the_registry_for_a_metric_it_gains(monkeypatch):
    """A metric added to the registry lands in its group's table with no change to report code."""
    from dataclasses import replace

    new = replace(METRICS["epsilon_linear"], name="epsilon_lower", headline=False, group="fairness")
    monkeypatch.setitem(METRICS, "epsilon_lower", new)
    records = fixture_records()
    for r in records:
        r["metrics"]["epsilon_lower"] = r["metrics"]["epsilon"] / 2
    report = build_report(records)
    fairness = next(s for s in report.sections if s.group == "fairness")
    assert "epsilon_lower" in [c.key for c in fairness.columns]
    assert "epsilon_lower" not in [c.key for c in report.headline]


def test_headline_view_and_sections():
    report = fixture_report()
    assert [c.key for c in report.headline] == ["epsilon", "fd", "target_gap", "fid@raw", "utility_fraction",
                                                "nfe_per_sample", "s_per_1000_samples"]
    assert [s.group for s in report.sections] == ["fairness", "balance", "quality", "utility", "cost", "search"]
    assert report.columns["epsilon"].rank_group == "epsilon_group" and report.columns["target_gap"].rank_group is None
    assert report.summary.date == "2026-12-02T10:00:00+00:00" and report.summary.bias == "0.8"
    # seconds per 1000 samples: the mean over seeds of 1000 / samples_per_s
    row = report.frame.set_index("method").loc["conditional"]
    assert row["s_per_1000_samples_mean"] == pytest.approx((1000 / 110 + 1000 / 100) / 2)
    assert seconds_per_1000({"samples_per_s": 0.0}) is None and seconds_per_1000({}) is None


def test_pareto_views_of_fairness_against_quality_and_cost():
    report = fixture_report()
    (quality, cost) = report.pareto
    assert (quality.y.key, quality.x.key, cost.x.key) == ("epsilon", "fid@raw", "s_per_1000_samples")
    # epsilon / fid means: conditional .80/13.8, switching .34/26.2, mixing .005/28.15, guidance .495/10.4
    # conditional is dominated by the guidance (fairer and better FID); the other three trade off
    assert quality.front == ("attribute_switching(tau=direct)", "embedding_mixing(weight=0.5)",
                             "classifier guidance to unconditional")
    # seconds: conditional 9.55, switching 10.02, mixing 9.09, guidance 13.16: mixing is fastest and fairest
    assert cost.front == ("embedding_mixing(weight=0.5)",)


def test_markdown_golden():
    golden("leaderboard.md", render_markdown(fixture_report()))


def test_headline_csv_golden_and_it_reads_back():
    text = render_csv(fixture_report())
    golden("leaderboard-headline.csv", text)
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame["method"]) == list(TABLE)
    assert list(frame["epsilon_group"]) == RANK_GROUPS["epsilon"]
    assert frame.loc[0, "epsilon_mean"] == pytest.approx(0.80)
    assert not any(c.startswith(("kid", "kl_uniform", "tau")) for c in frame.columns)  # detail columns stay out


# ---------------------------------------------------------------------------------------------
# LaTeX


def environments_balanced(text: str) -> bool:
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{([^}]*)\}", text):
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack


def braces_balanced(text: str) -> bool:
    depth = 0
    for match in re.finditer(r"(?<!\\)[{}]", text.replace("\\\\", "")):
        depth += 1 if match.group() == "{" else -1
        if depth < 0:
            return False
    return depth == 0


def test_latex_golden_and_its_structure():
    text = render_latex(fixture_report())
    golden("leaderboard.tex", text)
    assert environments_balanced(text) and braces_balanced(text)
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0]
    assert all(line.count("&") == len(fixture_report().headline) for line in body.strip().splitlines())
    assert "\\toprule" in text and "\\usepackage{booktabs}" in text
    assert not re.search(r"(?<!\\)_", "\n".join(l for l in text.splitlines() if not l.startswith("%")))


def test_latex_bold_only_where_the_best_rank_group_is_alone():
    text = render_latex(fixture_report())
    rows = {line.split(" & ")[0]: line.split(" & ") for line in text.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()}
    bold = {(label, i) for label, cells in rows.items() for i, cell in enumerate(cells) if r"\textbf" in cell}
    # epsilon (column 1): mixing is best and alone in group a; fd (2): mixing best but shares a with switching;
    # target_gap (3): no rank groups; fid (4): guidance best (a) shares a with conditional (ab)
    assert bold == {("embedding\\_mixing(weight=0.5)", 1)}
    assert render_latex(fixture_report(groups=False)).count(r"\textbf") == 0


def test_latex_escapes_hostile_labels():
    records = fixture_records()
    hostile = r"a_b & c % d $ e # f {g} ~h ^i \j <k>"
    for r in records:
        if r["label"] == "conditional":
            r["label"] = hostile
    text = render_latex(build_report(records))
    assert environments_balanced(text) and braces_balanced(text)
    line = next(l for l in text.splitlines() if l.startswith("a"))
    assert line.startswith(r"a\_b \& c \% d \$ e \# f \{g\} \textasciitilde{}h \textasciicircum{}i \textbackslash{}j \textless{}k\textgreater{} & ")
    assert line.count("&") - line.count(r"\&") == len(build_report(records).headline)


def test_cli_prints_latex_and_csv_and_writes_nothing(tmp_path, capsys):
    for r in fixture_records():
        write_record(tmp_path, r)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["leaderboard", str(tmp_path), "--format", "latex"]) == 0
    assert capsys.readouterr().out == render_latex(build_report(read_records(tmp_path)))
    assert main(["leaderboard", str(tmp_path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("method,benchmark,n_seeds,epsilon_mean")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert main(["leaderboard", str(tmp_path), "--format", "latx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench: error: ") and "latex" in err and err.count("\n") == 1
