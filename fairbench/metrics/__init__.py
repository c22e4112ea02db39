"""Every measurement fairbench reports: its name, formula, citation and direction.

The functions live in the submodules (`fairness`, `balance`, `quality`, `utility`, `cost`;
`suite.evaluate` runs them for a run); this table is what `fairbench ls`, `docs/metrics.md`
(`fairbench.metrics.docs`) and the leaderboards read. Names here are the keys of a record's
``metrics``.

The functions are importable from here for samples made anywhere (see docs/audit.md)::

    from fairbench.metrics import epsilon_fairness
    estimate = epsilon_fairness(features, requested)  # features [N, d], requested [N] codes
    estimate.value, estimate.interval
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .balance import attribute_distribution, balance_metrics, fairness_discrepancy, judged_distribution, kl_to_uniform
from .fairness import EpsilonEstimate, EpsilonLowerBound, HeldOutPredictions, epsilon_fairness, epsilon_lower
from .features import FeatureExtractor, inception_features, raw_features
from .quality import FeatureStats, frechet_distance, kernel_distance, quality_metrics
from .suite import SuiteOptions, evaluate
from .utility import UtilityResult, train_synthetic_test_real


MetricGroup = Literal["fairness", "balance", "inheritance", "quality", "utility", "cost", "search"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    formula: str
    direction: Literal["lower", "higher", "none"]  # which is better
    citation: str
    interval: str | None = None  # name of the metric holding its [low, high] interval
    interval_method: str | None = None  # how that interval is computed
    # A metric only comparable between records that agree on this other record field (e.g.
    # FIDs with the same feature extractor): leaderboards give each value of it its own column.
    keyed_by: str | None = None
    blind_spot: str = ""  # what the measurement cannot see
    # Which table of a leaderboard shows it (a key of METRIC_GROUPS): reports lay out their
    # detail tables from this, so a new metric falls into place by declaring its group.
    group: MetricGroup | None = None
    headline: bool = False  # one of the few columns of a leaderboard's first table


# The detail tables of a leaderboard, in order: title and what the group answers.
METRIC_GROUPS: dict[str, tuple[str, str]] = {
    "fairness": ("Fairness", "how well a classifier tells the requested groups apart (epsilon: lower is fairer)"),
    "balance": ("Balance", "how the judged sensitive attribute is spread within each requested group"),
    "inheritance": ("Bias inheritance", "how much the target attribute still depends on the group (the training bias)"),
    "quality": ("Quality", "how close the samples are to real data, on the features named in the column"),
    "utility": ("Utility", "how well a downstream classifier trained on the samples does on real data"),
    "cost": ("Cost", "model evaluations, time and memory of sampling"),
    "search": ("Tau search", "the transition timestep and what its search cost"),
}


_FID_CITATION = "Heusel et al. 2017, GANs trained by a two time-scale update rule converge to a local Nash equilibrium (NeurIPS)"
_TSTR = "train on synthetic, test on real: Esteban, Hyland & Raetsch 2017, Real-valued (medical) time series generation with recurrent conditional GANs"

METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in [
        MetricInfo(
            "epsilon",
            "max over pairs (a, b) of clip(mean over r repeated fold splits of 2 * BA_r - 1, 0, 1), BA_r the "
            "balanced accuracy of held-out predictions of `requested`, each fold predicted by the (learner, "
            "feature space) of a panel chosen and fitted without that fold (nested cross-fitting); a lower "
            "bound on max_ab TV(q(x|a), q(x|b)); blind to differences no panel member can pick up from the "
            "feature spaces given",
            "lower",
            "Choi et al. 2024 (epsilon-fairness); estimator: fairbench (docs/metrics.md, epsilon)",
            interval="epsilon_ci",
            interval_method="e -+ t_{S-1}(0.975) sd, sd the standard deviation of the whole estimate (nested "
            "selection and fits included) over S = 8 refitted stratified half-samples drawn without replacement "
            "(not rescaled: a half of a finite sample varies about it as a whole sample does); covers the expected "
            "held-out 2 BA - 1 of the procedure at this n, which is TV where a panel learner is Bayes-optimal "
            "(docs/metrics.md, epsilon)",
            group="fairness", headline=True,
        ),
        MetricInfo(
            "epsilon_lower",
            "max over pairs (a, b) of max(0, L_b - U_a): a classifier chosen (panel, cross-fitted balanced accuracy) "
            "and fitted on a stratified random half of the pair's samples predicts the other half; L_b the exact "
            "Clopper-Pearson lower bound of P(g = b | b) and U_a the upper bound of P(g = b | a), each at "
            "1 - alpha/(2P) (alpha = 1 - confidence, P pairs); a one-sided 95% lower confidence bound on "
            "max_ab TV(q(x|a), q(x|b)) valid for any learner and any n",
            "lower",
            "Clopper & Pearson 1934, The use of confidence or fiducial limits illustrated in the case of the binomial "
            "(Biometrika); classifier two-sample tests: Lopez-Paz & Oquab 2017 (ICLR); fairbench",
            blind_spot="as epsilon, and looser: half the samples train, half score, and the binomial bounds are "
            "conservative; a weak learner makes it low, never invalid",
            group="fairness",
        ),
        MetricInfo(
            "epsilon_p_value",
            "(1 + #{pi: T(pi) >= T}) / (1 + P): T the unclipped epsilon statistic, T(pi) the same with the "
            "requested labels permuted against the fixed held-out predictions, P permutations; null: the "
            "requested groups have one distribution (Bonferroni over pairs for k > 2)",
            "none",
            "permutation test of a cross-validated classifier: Ojala & Garriga 2010 (JMLR); fairbench",
            blind_spot="not refitted, so the null leaves out how the folds' classifiers vary with their training "
            "labels, and the test rejects too often: on identical 2-dim Gaussian groups, p < 0.05 in 8.3% of 300 "
            "draws at 500 per group and 14% of 100 at 2000 (`python tools/permutation_size.py`); read it as a "
            "screen. epsilon_lower > 0 is the exact test of one distribution at level 1 - confidence",
            group="fairness",
        ),
        MetricInfo("epsilon_learner", "the learner the nested selection chose most often (fairness.LEARNERS)",
                   "none", "-", group="fairness"),
        MetricInfo("epsilon_feature_space",
                   "the feature space the nested selection chose most often (the setup's features or raw)",
                   "none", "-", group="fairness"),
        MetricInfo(
            "epsilon_linear",
            "max over pairs (a, b) of max(0, 2 * balanced_accuracy - 1) of one cross-fitted logistic "
            "regression on the setup's features (fairbench's earlier estimator; sees linear differences only)",
            "lower",
            "Choi et al. 2024 (epsilon-fairness); estimator: fairbench",
            interval="epsilon_linear_ci",
            interval_method="percentile bootstrap of the held-out predictions of the maximising pair, "
            "resampled within each group (no refitting)",
            group="fairness",
        ),
        MetricInfo("tv_exact", "closed-form max_ab TV between requested groups (analytic Gaussian model, DDIM)",
                   "lower", "METHOD.md, analytic Gaussian model", group="fairness"),
        MetricInfo(
            "fd",
            "max over requested groups g of || p_g - u ||_2, p_g(j) = fraction of group g's samples the judge labels j "
            "(argmax), u the target distribution (uniform, u_j = 1/k, unless `balance_target` is set); the L2 form of "
            "Choi et al. 2020 (other papers use L1, squared L2 or L2/k: not comparable)",
            "lower",
            "Choi et al. 2020, Fair generative modeling via weak supervision (ICML)",
            blind_spot="only the judged sensitive attribute (not the target, not anything the judge does not read); "
            "judge errors move it (see fd_corrected); the plug-in norm of a finite group is biased upward, by about "
            "sqrt((k-1)/(k n)) for a group of n samples drawn exactly from u",
            group="balance", headline=True,
        ),
        MetricInfo(
            "kl_uniform",
            "max over requested groups g of KL(p_g || u) = sum_j p_g(j) log(p_g(j) / u_j) (0 log 0 = 0)",
            "lower",
            "Zhang et al. 2023, ITI-GEN: Inclusive text-to-image generation (ICCV)",
            blind_spot="as fd; infinite where a group puts mass on a value the target excludes",
            group="balance",
        ),
        MetricInfo(
            "fd_worst_group", "the requested group whose judged distribution gives fd", "none", "-",
            group="balance",
        ),
        MetricInfo(
            "fd_pooled",
            "|| p - u ||_2 with p the judged distribution of all samples pooled over the requested groups",
            "none",
            "Choi et al. 2020 (as they report it, over all samples)",
            blind_spot="over a balanced request every method pools to balance, the unfair reference included: "
            "it cannot rank methods that condition on a request, and is kept for comparison with papers only",
            group="balance",
        ),
        MetricInfo(
            "kl_uniform_pooled", "KL(p || u) with p the judged distribution of all samples pooled", "none",
            "Zhang et al. 2023 (ITI-GEN)", blind_spot="as fd_pooled",
            group="balance",
        ),
        MetricInfo(
            "judged_distribution",
            "per requested value: p_j = fraction of its samples the judge labels j (argmax), j = 1..k",
            "none",
            "Choi et al. 2020 (attribute balance); judge: fairbench",
            group="balance",
        ),
        MetricInfo(
            "judge_accuracy_by_class",
            "per sensitive value i: C[i, i], C[i, j] = P(judge labels j | true value i) on the held-out real split",
            "none",
            "Teo et al. 2023, On measuring fairness in generative models (NeurIPS)",
            blind_spot="the judge's error on generated samples, which can differ from its error on real ones",
            group="balance",
        ),
        MetricInfo(
            "judged_distribution_corrected",
            "per requested value: the q on the simplex that solves C^T q = p_judged (least squares, then Euclidean "
            "projection onto the simplex); for k = 2 the CLEAM point estimate q_1 = (p_1 - (1 - a_0)) / (a_0 + a_1 - 1)",
            "none",
            "Teo et al. 2023 (CLEAM point estimate); Lipton, Wang & Smola 2018, Detecting and correcting for label "
            "shift with black box predictors (ICML)",
            blind_spot="assumes the judge errs on generated samples as on real ones (class-conditional error "
            "unchanged); meaningless for a judge near chance",
            group="balance",
        ),
        MetricInfo(
            "fd_corrected",
            "fd computed on judged_distribution_corrected (the worst requested group after correcting for the judge's error)",
            "lower",
            "Choi et al. 2020; correction: Teo et al. 2023",
            blind_spot="as fd and judged_distribution_corrected",
            group="balance",
        ),
        # Several sensitive attributes at once (fairbench.metrics.axes): per axis, the other axes pooled.
        MetricInfo(
            "epsilon_by_attribute",
            "per axis j of a product attribute: epsilon with the samples grouped by the requested value of axis j "
            "alone (the other axes pooled); the flat epsilon is the joint value",
            "lower", "Choi et al. 2024 (epsilon-fairness); per axis: fairbench",
            blind_spot="pooling the other axes can hide a shift of axis j that reverses with another axis's value; "
            "the joint epsilon sees it",
            group="fairness",
        ),
        MetricInfo("epsilon_ci_by_attribute", "per axis: the interval of epsilon_by_attribute, as epsilon_ci", "none",
                   "fairbench", group="fairness"),
        MetricInfo("epsilon_p_value_by_attribute", "per axis: the permutation p-value of epsilon_by_attribute, as "
                   "epsilon_p_value", "none", "fairbench", group="fairness"),
        MetricInfo("epsilon_max_by_attribute", "max over axes j of epsilon_by_attribute[j]", "lower", "fairbench",
                   blind_spot="as epsilon_by_attribute", group="fairness"),
        MetricInfo(
            "fd_by_attribute",
            "per axis j: fd with the judge's label for axis j taken from its joint label (argmax over the tuples) "
            "and the samples grouped by the requested value of axis j; target: the marginal of balance_target",
            "lower", "Choi et al. 2020; per axis: fairbench",
            blind_spot="as fd_max_by_attribute; a judge that confuses the tuples confuses the axes alike",
            group="balance",
        ),
        MetricInfo("fd_max_by_attribute", "max over axes j of fd_by_attribute[j]", "lower", "fairbench",
                   blind_spot="pooling the other axes can hide an imbalance that reverses with another axis's value", group="balance"),
        MetricInfo("kl_uniform_by_attribute", "per axis: kl_uniform on the per-axis labels and groups of fd_by_attribute",
                   "lower", "Zhang et al. 2023 (ITI-GEN); per axis: fairbench", group="balance"),
        MetricInfo("fd_worst_group_by_attribute", "per axis: the requested value of that axis with the largest fd",
                   "none", "fairbench", group="balance"),
        MetricInfo("fd_pooled_by_attribute", "per axis: fd_pooled on that axis's labels", "none", "fairbench", group="balance"),
        MetricInfo("kl_uniform_pooled_by_attribute", "per axis: kl_uniform_pooled on that axis's labels", "none",
                   "fairbench", group="balance"),
        MetricInfo("judged_distribution_by_attribute",
                   "per axis and requested value of it: the judged distribution over that axis's values; the average "
                   "of the marginals of the joint judged distributions of the tuples with that value", "none",
                   "fairbench", group="balance"),
        MetricInfo("judged_distribution_corrected_by_attribute",
                   "per axis: judged_distribution_corrected with the axis's confusion matrix on the held-out real split",
                   "none", "Teo et al. 2023; per axis: fairbench",
                   blind_spot="as judged_distribution_corrected", group="balance"),
        MetricInfo("fd_corrected_by_attribute", "per axis: fd_corrected on judged_distribution_corrected_by_attribute",
                   "lower", "Choi et al. 2020; correction: Teo et al. 2023; per axis: fairbench",
                   blind_spot="as fd_corrected", group="balance"),
        MetricInfo(
            "target_distribution_by_requested",
            "per requested value: fraction of its samples the target judge labels y (argmax), for every target value y",
            "none", "fairbench (bias inheritance)",
            group="inheritance",
        ),
        MetricInfo(
            "target_distribution_by_final",
            "per final value (the one each sample ends with): the judged target distribution of those samples",
            "none", "fairbench (bias inheritance)",
            group="inheritance",
        ),
        MetricInfo(
            "target_gap",
            "max over pairs of groups (g, h), groups by requested value and by final value, of "
            "TV(r_g, r_h) = 1/2 sum_y |r_g(y) - r_h(y)|, r_g the judged target distribution of group g",
            "lower",
            "fairbench; the biased-train setting of Choi et al. 2020",
            interval="target_gap_ci",
            interval_method="percentile bootstrap: each group's labels resampled (multinomial, group sizes kept)",
            blind_spot="only the target labels' marginal per group (not how the images of a value look); the "
            "plug-in TV of finite groups is biased upward, about sqrt(m / (2 pi n)) for m target values and groups "
            "of n from one distribution (compare with target_gap_null); target judge errors",
            group="inheritance", headline=True,
        ),
        MetricInfo(
            "target_gap_null",
            "mean target_gap over 200 shuffles of the target labels across the groups (sizes kept): the value "
            "of no dependence at this record's group sizes",
            "none", "fairbench (permutation reference)",
            group="inheritance",
        ),
        MetricInfo(
            "target_gap_train",
            "target_gap of the real training split: true target labels grouped by the real sensitive value "
            "(the bias a generator can inherit)",
            "none", "fairbench",
            group="inheritance",
        ),
        MetricInfo(
            "target_gap_heldout",
            "target_gap of the unbiased held-out real split (true labels, grouped by the real sensitive value): "
            "what 'no inherited bias' looks like (the digits splits are stratified, so it sits below the sampling "
            "floor of generated groups: see target_gap_null)",
            "none", "fairbench",
            group="inheritance",
        ),
        MetricInfo(
            "target_judge_accuracy",
            "accuracy of the target judge (argmax) on the held-out real split",
            "none", "-",
            group="inheritance",
        ),
        MetricInfo(
            "fid",
            "||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)) of generated (g) and real (r) feature "
            "means and covariances, all samples against all real data",
            "lower", _FID_CITATION, keyed_by="fid_features",
            blind_spot="anything the feature extractor does not encode; which group a sample belongs to; biased "
            "upward at small sample sizes",
            group="quality", headline=True,
        ),
        MetricInfo(
            "fid_by_group",
            "per sensitive value a: the FID of the samples meant to carry a (their final value) against the real "
            "images of a; None (reason in quality_groups) when a side has fewer than 2 D images, D the feature dimension",
            "lower", _FID_CITATION, keyed_by="fid_features",
            blind_spot="whether the samples carry a (that is balance's job); as fid",
            group="quality",
        ),
        MetricInfo(
            "kid",
            "unbiased MMD^2 with kernel k(x, y) = (x.y / d + 1)^3 between generated and real features, "
            "mean over random subsets of m = min(n_g, n_r, subset size) of each",
            "lower",
            "Binkowski et al. 2018, Demystifying MMD GANs (ICLR)", keyed_by="fid_features",
            blind_spot="anything the feature extractor does not encode",
            group="quality",
        ),
        MetricInfo(
            "kid_by_group",
            "per sensitive value a: the KID of the samples meant to carry a against the real images of a",
            "lower", "Binkowski et al. 2018", keyed_by="fid_features",
            blind_spot="as fid_by_group; unbiased, so it stays meaningful where fid_by_group is not computed",
            group="quality",
        ),
        MetricInfo(
            "quality_groups",
            "per group of fid_by_group: which samples and which real images it compares, their counts, and why "
            "a FID was not computed",
            "none", "-",
            group="quality",
        ),
        MetricInfo(
            "fid_features",
            "name of the feature extractor behind fid, fid_by_group and kid (raw, a judge layer, inception-v3)",
            "none", "-",
            group="quality",
        ),
        MetricInfo(
            "utility_accuracy",
            "accuracy on the held-out real split of a 5-nearest-neighbour vote for the target attribute over the "
            "generated samples' raw values (images area-averaged to at most 16 x 16), labelled by the target judge "
            "(utility_target = \"sensitive\": by the condition each sample ends with)",
            "higher", _TSTR,
            blind_spot="utility a stronger model would extract; copies of training images (they score as real data); "
            "judge label noise on generated samples lowers it like poor samples do; judge-labelled noise scores "
            "above chance (the labels carry the judge's knowledge), so read it against the controls",
            group="utility",
        ),
        MetricInfo(
            "utility_accuracy_real",
            "utility_accuracy of the same classifier trained on the real training split (true labels)",
            "none", _TSTR,
            group="utility",
        ),
        MetricInfo(
            "utility_fraction",
            "utility_accuracy / utility_accuracy_real: the share of real data's utility the samples give",
            "higher", _TSTR,
            blind_spot="as utility_accuracy; the real reference trains on the biased training split, so a fair "
            "method can exceed 1",
            group="utility", headline=True,
        ),
        MetricInfo(
            "utility_accuracy_by_group",
            "utility_accuracy within each value of the real sensitive attribute (fairlearn MetricFrame)",
            "higher", "Weerts et al. 2023, Fairlearn: assessing and improving fairness of AI systems (JMLR)",
            group="utility",
        ),
        MetricInfo(
            "utility_dp_difference",
            "max over target classes c of max_g P(yhat = c | s = g) - min_g P(yhat = c | s = g) on real data "
            "(one-vs-rest; fairlearn demographic_parity_difference per class)",
            "lower", "demographic parity; fairlearn (Weerts et al. 2023)",
            blind_spot="part of it is the real test data's own dependence between target and sensitive value",
            group="utility",
        ),
        MetricInfo(
            "utility_eo_difference",
            "max over target classes c of max(TPR gap, FPR gap) across real sensitive groups of the "
            "one-vs-rest prediction of c (fairlearn equalized_odds_difference per class)",
            "lower", "Hardt, Price & Srebro 2016, Equality of opportunity in supervised learning (NeurIPS); fairlearn",
            blind_spot="noisy with few real test images per (class, group) cell",
            group="utility",
        ),
        MetricInfo("nfe_per_sample", "model evaluations per generated sample", "lower", "-", group="cost", headline=True),
        MetricInfo("wall_s", "wall-clock seconds of sampling (tau search excluded)", "lower", "-", group="cost"),
        MetricInfo("samples_per_s", "n_samples / wall_s", "higher", "-", group="cost"),
        MetricInfo("n_used", "samples a sequential job drew (n_samples = { half_width, max }): the look at which "
                   "epsilon's interval was first at most half_width wide, or max", "lower", "-", group="cost"),
        MetricInfo("look_confidence", "level of every interval of a sequential record: 1 - (1 - confidence) / L "
                   "for its L looks, so that all looks cover at once with probability at least confidence "
                   "(union bound; the stopping look may be chosen from the data)", "none",
                   "confidence sequences over a fixed schedule of looks", group="cost"),
        MetricInfo("looks", "each look of a sequential job: n, epsilon, its interval at look_confidence and its "
                   "half-width", "none", "-", group="cost"),
        MetricInfo("measure_s", "wall-clock seconds of measuring the samples (every metric of the record, "
                   "features extracted once)", "lower", "-", group="cost"),
        MetricInfo(
            "peak_mem_mb",
            "peak memory of sampling in MiB: CUDA, torch.cuda.max_memory_allocated during sampling; "
            "CPU, peak resident set size during sampling minus the resident size before it, after the C "
            "allocator's free memory is returned to the system; states kept for later switching jobs "
            "(the prefix cache) are left out",
            "lower", "-",
            group="cost",
        ),
        MetricInfo(
            "s_per_1000_samples",
            "1000 / samples_per_s: wall-clock seconds of sampling per 1000 samples (tau search excluded); derived "
            "from each record's samples_per_s by the leaderboard",
            "lower", "-", blind_spot="the machine and its load as much as the method (compare within one run)",
            group="cost", headline=True,
        ),
        MetricInfo("peak_mem_basis", "which of the two peak_mem_mb measurements a record holds", "none", "-", group="cost"),
        MetricInfo("tau", "transition timestep used by attribute switching, on the training grid [-1, T-1]",
                   "none", "Choi et al. 2024, Algorithm 1", group="search"),
        MetricInfo("taus", "transition points of cyclic switching, tau_1 >= ... >= tau_(k-1): training timesteps, or continuous points between visited steps (a float above 1)",
                   "none", "-", group="search"),
        MetricInfo("tau_search_nfe", "model evaluations spent by the tau search, counted per sample", "lower", "-", group="search"),
        MetricInfo("tau_search_s", "wall-clock seconds of the tau search", "lower", "-", group="search"),
    ]
}


# ---------------------------------------------------------------------------------------------
# The public functions, for users' own samples (``from fairbench.metrics import epsilon_fairness``),
# imported at the top of this module.

_EXPORTS = {
    "epsilon_fairness": "fairness", "EpsilonEstimate": "fairness",
    "attribute_distribution": "balance", "fairness_discrepancy": "balance", "kl_to_uniform": "balance",
    "judged_distribution": "balance", "balance_metrics": "balance",
    "FeatureStats": "quality", "frechet_distance": "quality", "kernel_distance": "quality", "quality_metrics": "quality",
    "train_synthetic_test_real": "utility", "UtilityResult": "utility",
    "FeatureExtractor": "features", "raw_features": "features", "inception_features": "features",
    "evaluate": "suite", "SuiteOptions": "suite",
}
__all__ = ["METRICS", "METRIC_GROUPS", "MetricGroup", "MetricInfo", *_EXPORTS]

