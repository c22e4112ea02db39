"""Every measurement fairbench reports: its name, formula, citation and direction.

The functions live in the submodules (`fairness`, `balance`, `quality`, `utility`, `cost`;
`suite.evaluate` runs them for a run); this table is what `fairbench ls`, `docs/metrics.md`
(`fairbench.metrics.docs`) and the leaderboards read. Names here are the keys of a record's
``metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
            interval_method="each side the wider of: the percentile bootstrap of the repeat-averaged held-out "
            "predictions (within each group) widened in quadrature by z times the spread over fold splits; z times "
            "the estimate's standard deviation over refitted half-samples divided by sqrt(2) (refitting)",
        ),
        MetricInfo(
            "epsilon_p_value",
            "(1 + #{pi: T(pi) >= T}) / (1 + P): T the unclipped epsilon statistic, T(pi) the same with the "
            "requested labels permuted against the fixed held-out predictions, P permutations; null: the "
            "requested groups have one distribution (Bonferroni over pairs for k > 2)",
            "none",
            "permutation test of a cross-validated classifier: Ojala & Garriga 2010 (JMLR); fairbench",
        ),
        MetricInfo("epsilon_learner", "the learner the nested selection chose most often (fairness.LEARNERS)",
                   "none", "-"),
        MetricInfo("epsilon_feature_space",
                   "the feature space the nested selection chose most often (the setup's features or raw)",
                   "none", "-"),
        MetricInfo(
            "epsilon_linear",
            "max over pairs (a, b) of max(0, 2 * balanced_accuracy - 1) of one cross-fitted logistic "
            "regression on the setup's features (fairbench's earlier estimator; sees linear differences only)",
            "lower",
            "Choi et al. 2024 (epsilon-fairness); estimator: fairbench",
            interval="epsilon_linear_ci",
            interval_method="percentile bootstrap of the held-out predictions of the maximising pair, "
            "resampled within each group (no refitting)",
        ),
        MetricInfo("tv_exact", "closed-form max_ab TV between requested groups (analytic Gaussian model, DDIM)",
                   "lower", "METHOD.md, analytic Gaussian model"),
        MetricInfo(
            "fd",
            "|| p - u ||_2 with p_j = (1/N) sum_i 1[argmax_c judge(x_i)_c = j] over all N samples and u_j = 1/k",
            "lower",
            "Choi et al. 2020, Fair generative modeling via weak supervision (ICML)",
        ),
        MetricInfo(
            "kl_uniform",
            "KL(p || u) = sum_j p_j log(k p_j) (0 log 0 = 0), p the judged attribute distribution over all samples",
            "lower",
            "Zhang et al. 2023, ITI-GEN: Inclusive text-to-image generation (ICCV)",
        ),
        MetricInfo(
            "judged_distribution",
            "per requested value: p_j = fraction of its samples the judge labels j (argmax), j = 1..k",
            "none",
            "Choi et al. 2020 (attribute balance); judge: fairbench",
        ),
        MetricInfo(
            "fid",
            "||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)) of generated (g) and real (r) feature "
            "means and covariances, all samples against all real data",
            "lower", _FID_CITATION, keyed_by="fid_features",
        ),
        MetricInfo(
            "fid_by_group",
            "per requested value: the FID of its samples against all real data",
            "lower", _FID_CITATION, keyed_by="fid_features",
        ),
        MetricInfo(
            "kid",
            "unbiased MMD^2 with kernel k(x, y) = (x.y / d + 1)^3 between generated and real features, "
            "mean over random subsets of m = min(n_g, n_r, subset size) of each",
            "lower",
            "Binkowski et al. 2018, Demystifying MMD GANs (ICLR)", keyed_by="fid_features",
        ),
        MetricInfo(
            "fid_features",
            "name of the feature extractor behind fid, fid_by_group and kid (raw, a judge layer, inception-v3)",
            "none", "-",
        ),
        MetricInfo(
            "utility_accuracy",
            "accuracy on real held-out data of a logistic regression for the target attribute trained on "
            "generated samples labelled by the target judge",
            "higher", _TSTR,
        ),
        MetricInfo(
            "utility_accuracy_by_group",
            "utility_accuracy within each value of the real sensitive attribute (fairlearn MetricFrame)",
            "higher", "Weerts et al. 2023, Fairlearn: assessing and improving fairness of AI systems (JMLR)",
        ),
        MetricInfo(
            "utility_dp_difference",
            "max over target classes c of max_g P(yhat = c | s = g) - min_g P(yhat = c | s = g) on real data "
            "(one-vs-rest; fairlearn demographic_parity_difference per class)",
            "lower", "demographic parity; fairlearn (Weerts et al. 2023)",
        ),
        MetricInfo(
            "utility_eo_difference",
            "max over target classes c of max(TPR gap, FPR gap) across real sensitive groups of the "
            "one-vs-rest prediction of c (fairlearn equalized_odds_difference per class)",
            "lower", "Hardt, Price & Srebro 2016, Equality of opportunity in supervised learning (NeurIPS); fairlearn",
        ),
        MetricInfo("nfe_per_sample", "model evaluations per generated sample", "lower", "-"),
        MetricInfo("wall_s", "wall-clock seconds of sampling (tau search excluded)", "lower", "-"),
        MetricInfo("samples_per_s", "n_samples / wall_s", "higher", "-"),
        MetricInfo(
            "peak_mem_mb",
            "peak memory of sampling in MiB: CUDA, torch.cuda.max_memory_allocated during sampling; "
            "CPU, peak resident set size during sampling minus the resident size before it",
            "lower", "-",
        ),
        MetricInfo("peak_mem_basis", "which of the two peak_mem_mb measurements a record holds", "none", "-"),
        MetricInfo("tau", "transition timestep used by attribute switching, on the training grid [-1, T-1]",
                   "none", "Choi et al. 2024, Algorithm 1"),
        MetricInfo("tau_search_nfe", "model evaluations spent by the tau search, counted per sample", "lower", "-"),
        MetricInfo("tau_search_s", "wall-clock seconds of the tau search", "lower", "-"),
    ]
}
