"""The metrics table of the documentation, generated from `METRICS`.

``python -m fairbench.metrics.docs [PATH]`` writes it (default ``docs/metrics.md``); a test
checks the committed file is up to date.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from . import METRICS

BETTER = {"lower": "lower", "higher": "higher", "none": "-"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


BALANCE_NOTES = """
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

EPSILON_NOTES = """\
## epsilon: the estimator, what it cannot see, and how it reads METHOD.md

**Definition.** A method is epsilon-fair when `max_{a,b} TV(q(x | requested=a), q(x | requested=b)) <= epsilon`.
For any classifier g fixed before it sees the samples it is scored on,
`2 BA(g) - 1 = P_a(g = a) - P_b(g = a) <= TV(q_a, q_b)` (BA the balanced accuracy), with equality for
the Bayes classifier. So every held-out balanced accuracy gives a lower bound on TV; the task is to
find a good classifier without spending the samples that score it.

**Estimate** (`fairbench.metrics.fairness.epsilon_fairness`). For each pair of requested values:
- the panel is every (learner, feature space) pair. Learners: logistic regression (Bayes-optimal for
  Gaussians of equal covariance) and `kernel_rbf`, the RBF kernel of an SVM (gamma = 1/d on
  standardised features; universal: differences in spread, modes, XOR-like structure) approximated
  by Nystroem features on 100 random landmarks, with a logistic regression on them; the exact
  RBF-kernel SVM (`svm_rbf`), k-NN and histogram gradient boosting are registered (`[metrics]
  epsilon_learners`). Feature spaces: the setup's features (a judge's penultimate layer for images,
  the samples themselves otherwise) and, when a sample has at most 256 values (an 8x8 digit has 64),
  the raw values too. A judge's features are trained for the judge's task and can be blind to the
  rest; raw values are not.
- nested cross-fitting: stratified 5-fold splits; the model that predicts fold k is chosen among the
  panel by its balanced accuracy on the two neighbouring folds, each predicted by a model fitted
  without that fold and fold k, then refitted on all folds but k. Nothing in fold k takes part in
  choosing or fitting its predictor, so the held-out `2 BA - 1` stays a lower bound on TV (up to
  sampling noise). Choosing instead the candidate with the best cross-fitted score of its own is
  biased upward (on identical groups with twelve candidates by about 0.17 at 80 samples per group;
  `tests/test_metrics_fairness.py`).
- `epsilon = clip(mean_r (2 BA_r - 1), 0, 1)` over 3 fold splits r; for k > 2 the largest pair.
- `epsilon_learner`, `epsilon_feature_space`: the (learner, space) chosen most often over the
  3 x 5 (split, fold) units.
- each fit sees at most 10,000 samples (`[metrics] epsilon_max_train`; a stratified random subset
  of its training folds above that), and every sample is still held out and predicted.
- the held-out predictions of the reported pair are in the result: `estimate.heldout`
  (`HeldOutPredictions`: `indices` into the arrays passed in, `requested`, `predicted[r, j]` the
  out-of-fold predicted requested value of sample `indices[j]` in fold split r, and
  `statistic(positions)`, the unclipped estimate on any resample of positions, without refitting).

**Why this estimator, by measurement.** The exact RBF SVM of the earlier panel is fitted on every
fold, repeat and half-sample with no bound on its training size: O(n^2) to O(n^3), 87.7 s at 16,000
2-dim samples and hours at 50,000. Its Nystroem approximation costs O(n m d) with m = 100 landmarks:
on the known-truth cases at 500 per group (5-fold cross-fitted `2 BA - 1`; Nystroem: mean of 3
draws, exact SVM: mean of 4) it matches the exact SVM (variance ratio 4: 0.465 vs 0.464; mixture
weights 0.294 vs 0.296; XOR 0.740 vs 0.740; 64-dim variance ratio 0.729 vs 0.709), with 100, 200
and 300 landmarks giving the same values within 0.01, so the cheapest is kept. The training cap bounds each
fit; predictions stay linear in n. The validation report (`docs/metrics-validation.md`) shows every
known-truth row with it. Costs: `benchmarks/scaling.py`.

**Interval** (`epsilon_ci`). What it covers: the expected held-out `2 BA - 1` of this procedure
(panel, nested selection, fits) at this number of samples, a quantity at most TV. Where a panel
learner is Bayes-optimal it equals TV up to that learner's O(1/n) excess error, so there it covers
the exact TV; elsewhere it sits below TV by the learner's excess error and can miss it (the bound
that holds for any learner is `epsilon_lower`). How: the whole estimate (nested selection included)
is rerun on 8 stratified half-samples drawn without replacement (a bootstrap's duplicates would
leak across folds), and `sd` is the standard deviation of their estimates, as it is: a half of a
finite sample, drawn without replacement, varies about the whole as much as an independent sample
of the whole size varies (finite-population correction `1 - m/n = 1/2`; balanced half-samples,
McCarthy 1969), so test-sample, fold-split and refitting variability are all in it. The interval
is `e -+ t_7(0.975) sd` (Student's t with 7 degrees of freedom, since sd comes from 8 values),
clipped to [0, 1]; it always contains the estimate. The earlier interval divided `sd` by sqrt(2)
(treating the halves as independent samples of half the size) and mixed it with a bootstrap of the
held-out predictions, which ignores refitting; it covered the exact TV in 75-92% of draws at 500 per
group. Measured now (coverage table of `docs/metrics-validation.md`, `fairbench report metrics`
at its defaults, 200 draws per row; mean shift, where logistic regression is Bayes-optimal):
0.960, 0.955, 0.965 and 0.980 at 250, 500, 1000 and 2000 per group (standard error about 0.015
each), within 3 points of the nominal 0.95 at every size, on the conservative side at 2000; and
`epsilon_lower` stayed below the exact TV in 99.5-100% of 200 draws on every known-truth case and size. With `epsilon_subsamples = 0` the interval is the cheaper normal
`e -+ z sqrt(v + w)` (held-out test-sample and fold-split variances only), which is conservative
for learners that adapt to their sample (their threshold follows the sample's own fluctuation) and
ignores refitting. Neither includes the variation between two trainings of the generator;
`fairbench check` accounts for that separately (`training_spread`).

**Lower bound** (`epsilon_lower`): a one-sided 95% lower confidence bound on TV valid for any
learner and any n. For each pair, a stratified random half of its samples chooses a panel member
(3-fold cross-fitted balanced accuracy, within that half) and fits it; the fitted classifier g then
predicts the other half, where, given the first half, `#{g = b | b} ~ Bin(n_b, TPR)` and
`#{g = b | a} ~ Bin(n_a, FPR)` independently and `TPR - FPR <= TV`. The bound is the exact
Clopper-Pearson lower bound of TPR minus the upper bound of FPR, each at `1 - alpha/2` (Bonferroni),
`alpha = 0.05` divided by the number of pairs (a union bound for the maximum over pairs), clipped at
0. A weak learner makes it low, never invalid; it is looser than `epsilon` (half the samples score,
half train). Its coverage on every known-truth case is in `docs/metrics-validation.md`.

**p-value** (`epsilon_p_value`): null "the requested groups have one distribution"; the statistic is
the unclipped mean `2 BA - 1`, compared with 1000 permutations of the requested labels against the
fixed held-out predictions. Read `epsilon = 0` with it: a large p-value with few samples is "no
power", not "fair".

**What it cannot see.** A difference that no panel member can learn from the feature spaces given at
this n: fine structure in many dimensions, or a difference only in values the features discard (a
judge blind to it, and raw values too large to search, as with Stable Diffusion latents). It compares
the requested groups with each other, not with real data: two groups equally wrong, or equally
collapsed onto a few modes, are fair under it. It is a population-level statement: it says nothing
about an individual sample, nor about which attribute values the samples carry (that is the balance
metrics' job), nor about inherited correlations with other attributes (`random_condition` is fair
under epsilon by construction and keeps the training bias).

**Deviations from METHOD.md, argued.**
- Cross-fitted, not one split: each sample is held out once per split, so the estimate uses all
  samples (a 50/50 split would double the variance) and stays a lower bound.
- The panel is searched per fold, so the estimate is the held-out score of the per-fold choice, not
  the best candidate's own score: the latter has seen its scoring folds and is biased upward.
- Averaged over 3 fold splits before clipping: the split is arbitrary. The interval comes from 8
  refitted half-samples rather than refits inside each of 1000 bootstrap draws (125 times cheaper,
  and free of the duplicates that make a bootstrap sample leak across folds).
- The kernel learner is a Nystroem approximation of the RBF kernel rather than an exact SVM, and a
  fit sees at most 10,000 samples: linear cost in n (see "Why this estimator").
- The permutation test does not refit. Refitting under 1000 permutations would cost 1000 estimates.
  Within a fold, the held-out predictions are independent of that fold's labels under the null; a
  global permutation adds the between-fold variation of the fitted models to the null, so the test
  is slightly conservative (measured: the identical-groups rows of the validation report).
- Raw values are searched beside a judge's features whenever they are small enough, also for images,
  where METHOD.md names the judge's features: on digits the judge's features can miss what the 64
  pixels show.
- For k > 2 the p-value of the maximising pair is multiplied by the number of pairs (Bonferroni).

**Cost**: `python benchmarks/scaling.py` (seconds per measured job and per epsilon estimate at 1k
to 64k samples of 2, 64 and 512 dims; numbers in the README, "Speed and memory") and
`python benchmarks/epsilon_cost.py` (CPU seconds at the benchmarks' sizes). Every record's
`measure_s` is the wall time of measuring that job (all metrics, the features extracted once),
beside `wall_s`, the time of sampling it; `benchmarks/gaussian-20k.toml` (20,000 samples of the
analytic Gaussian model, three methods, three seeds, DDPM 1000 steps) compares the two within
one run: measuring its nine jobs took 191 s of wall time against 507 s of sampling (ratio 0.38;
10-44 s per job, on 2 cores shared with two trainings, so both are slowed alike). Before the
Nystroem panel and the streamed quality metrics the same jobs spent 80-115 s each measuring.
KID is clean-fid's definition and subsets (`quality.kernel_distance`), computed with the cube as
two products: clean-fid's float power made it 5-6 CPU seconds per call at 2-dimensional
features, three calls per job.
`epsilon_linear` (the earlier estimator: one logistic regression on the setup's features, interval
without refitting) costs about 0.03 s and is recorded beside it, so old and new columns can be
compared.
"""

AXES_NOTES = """
## Several sensitive attributes at once: joint and per-axis values

When a model's sensitive attribute is the product of several (`attribute_axes` of the Gaussian
model, `attribute = ["gender", "age"]` of a folder dataset), each sample is requested a tuple,
and the flat metrics (`epsilon`, `fd`, ...) group the samples by the whole tuple: they are the
**joint** values. Beside them, per axis j (`fairbench.metrics.axes`), the samples are grouped by
the requested value of axis j alone, the other axes pooled: `epsilon_by_attribute`,
`fd_by_attribute` and the other `*_by_attribute` values, each a table {axis: value}, and the
leaderboard columns `epsilon_max_by_attribute` and `fd_max_by_attribute` (the worst axis).
The judge's label for an axis is that axis of its joint label, so a per-axis judged distribution
is exactly the average marginal of the joint ones of the tuples it pools.

How they relate: TV is jointly convex, so the true per-axis TV is at most the largest TV between
two tuples (the joint value); a method fair on every axis can still be unfair jointly (a shift
of sex that reverses with age pools to nothing on either axis). Switching one attribute
(`switch_attribute`) at its balancing tau reads fair on that axis and as unfair as conditional
sampling on the others (tests/test_multi_attribute.py). Single-attribute runs have none of
these fields.

**What it cannot see.** A per-axis value pools the other axes, so it cannot see a difference
that cancels across them; read the joint value beside it. The exact `tv_exact` of the Gaussian
model stays joint: a per-axis group is a mixture of Gaussians, with no closed-form TV here.
"""

# Prose sections appended after the table, in order; each returns Markdown.
NOTES: list[Callable[[], str]] = [lambda: EPSILON_NOTES, lambda: BALANCE_NOTES, lambda: AXES_NOTES]


def metrics_markdown() -> str:
    """A Markdown page: one row per metric with its formula, direction, interval and citation,
    then the prose sections of `NOTES`."""
    lines = [
        "# Metrics",
        "",
        "Generated from `fairbench.metrics.METRICS` by `python -m fairbench.metrics.docs`; do not edit by hand.",
        "Each name is a key of a record's `metrics`. Metrics keyed by another field (e.g. `fid` by",
        "`fid_features`) are only compared between records that agree on it; leaderboards give each",
        "value its own column (`fid@raw`, `fid@inception-v3`). `group` is the leaderboard table that shows",
        "it (headline: also in the first table).",
        "",
        "| metric | group | formula | better | interval | keyed by | citation | cannot see |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for info in METRICS.values():
        interval = f"`{info.interval}`: {info.interval_method}" if info.interval else "-"
        keyed = f"`{info.keyed_by}`" if info.keyed_by else "-"
        lines.append(
            f"| `{info.name}` | {info.group or '-'}{', headline' if info.headline else ''} | {_cell(info.formula)} | {BETTER[info.direction]} | {_cell(interval)} | {keyed} | {_cell(info.citation)} | {_cell(info.blind_spot) or '-'} |"
        )
    return "\n".join(lines) + "\n" + "".join("\n" + note() for note in NOTES)


def write_metrics_doc(path: str | Path = "docs/metrics.md") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(metrics_markdown(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_metrics_doc(*sys.argv[1:2]))
