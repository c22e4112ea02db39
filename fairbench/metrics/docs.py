"""The metrics table of the documentation, generated from `METRICS`.

``python -m fairbench.metrics.docs [PATH]`` writes it (default ``docs/metrics.md``); a test
checks the committed file is up to date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import METRICS

BETTER = {"lower": "lower", "higher": "higher", "none": "-"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


NOTES = """
## Reading the balance, inheritance, quality and utility columns

**Balance is per requested group.** `fd` and `kl_uniform` compare each requested group's
judged distribution with the target (uniform unless `balance_target` is set) and report the
worst group. Pooled over a balanced request every method looks balanced: a method that gives
each group exactly what it asked for pools to uniform. The pooled values stay as `fd_pooled`
and `kl_uniform_pooled` for comparison with papers that report them, without a direction.
FD is the L2 form of Choi et al. 2020, `||p - u||_2`; other papers use the L1 norm (twice the
total variation), the squared L2 norm, or L2 divided by k, so FDs are only compared with papers
that use the same form.

**The judge's error.** The judge's confusion matrix on the held-out real split, `C[i, j] =
P(judged j | true i)`, is recorded as `judge_accuracy_by_class` (its diagonal). If the judge
errs on generated samples as it does on real ones, `p_judged = C^T p_true`; the corrected
proportions solve that system and are projected onto the simplex (for k = 2 this is the point
estimate of CLEAM, Teo et al. 2023; for any k it is the confusion-matrix inversion of black-box
shift estimation, Lipton et al. 2018). `fd_corrected` is `fd` on them. The raw `fd` stays the
headline since it is what papers report; a judge at 85% per class reads a perfectly unfair
group as 0.85 / 0.15, and the corrected value puts it back at 1 / 0.

**Bias inheritance.** `target_gap` is the largest total variation between the judged target
distributions of any two groups, grouping the samples both by requested value and by the
value they end with (a random-condition sampler shows no gap by request and the whole
training bias by final value). Beside it: `target_gap_train` (the real biased training
split, true labels), `target_gap_heldout` (the unbiased held-out split) and `target_gap_null`
(the gap of no dependence at the record's own group sizes, from label permutations: the
plug-in TV of finite groups is never 0).

**Per-group quality.** `fid_by_group` and `kid_by_group` compare the samples meant to carry
value a (their final value) with the real images of a; `quality_groups` names both sides and
their sizes. Where a side holds fewer than 2 D images (D the feature dimension) the FID is
not computed and `quality_groups` says why: the covariance of so few rows is rank-deficient or
dominated by its estimation error. KID is unbiased and is given at any size.

**Utility.** The downstream model sees only the samples' raw values (images area-averaged to at
most 16 x 16): a 5-nearest-neighbour vote, labelled by the target judge, tested on the real
held-out split; `utility_fraction` divides by the same vote over the real training split. A
fitted model is not used on purpose: the judge's labels on any inputs describe the judge's
decision function, and a logistic regression fitted to judge-labelled uniform noise re-learns it
and scores like real data on sklearn's digits (tests/test_metrics_utility.py). The neighbour
vote scores only where samples lie near real images of each class, so noise ranks last; but
judge-labelled noise is still above chance (0.45 on digits with a logistic-regression judge,
tests/test_metrics_suite.py), since a real image's
nearest noise samples carry the judge's verdict on images like it. With labels that ignore the
samples (`utility_target = "sensitive"`: the condition each sample ends with) noise gets chance.
"""


def metrics_markdown() -> str:
    """A Markdown page: one row per metric with its formula, direction, interval and citation."""
    lines = [
        "# Metrics",
        "",
        "Generated from `fairbench.metrics.METRICS` by `python -m fairbench.metrics.docs`; do not edit by hand.",
        "Each name is a key of a record's `metrics`. Metrics keyed by another field (e.g. `fid` by",
        "`fid_features`) are only compared between records that agree on it; leaderboards give each",
        "value its own column (`fid@raw`, `fid@inception-v3`).",
        "",
        "| metric | formula | better | interval | keyed by | citation | cannot see |",
        "|---|---|---|---|---|---|---|",
    ]
    for info in METRICS.values():
        interval = f"`{info.interval}`: {info.interval_method}" if info.interval else "-"
        keyed = f"`{info.keyed_by}`" if info.keyed_by else "-"
        lines.append(
            f"| `{info.name}` | {_cell(info.formula)} | {BETTER[info.direction]} | {_cell(interval)} | {keyed} | {_cell(info.citation)} | {_cell(info.blind_spot) or '-'} |"
        )
    return "\n".join(lines) + "\n" + NOTES


def write_metrics_doc(path: str | Path = "docs/metrics.md") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(metrics_markdown(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_metrics_doc(*sys.argv[1:2]))
