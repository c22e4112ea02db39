"""FID and KID: closed forms, streaming statistics, the two backends, feature extractors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairbench.errors import FairbenchError
from fairbench.metrics.features import (
    CLEANFID_FILE,
    STATE_DICT_FILES,
    FeatureExtractor,
    cleanfid_dir,
    inception_features,
    missing_inception_message,
    module_features,
    pytorch_fid_inception,
    raw_features,
    torch_hub_checkpoints,
)
from fairbench.metrics.quality import FeatureStats, frechet_distance, kernel_distance, quality_metrics


def _exact_moments(rng, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n samples whose sample mean and (n - 1) covariance are exactly `mean` and `cov`."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whiten: cov(z) = I
    return mean + z @ np.linalg.cholesky(cov).T


def _closed_form_fid(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), with Tr (S1 S2)^1/2 = Tr (S1^1/2 S2 S1^1/2)^1/2."""
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)


def _random_cov(rng, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_streaming_stats_equal_batch_stats_whatever_the_batches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 6)) * [1, 2, 3, 0.1, 5, 1] + 1e4  # a large common offset
    for cuts in ([1000], [1, 999], [7, 100, 893], list(np.diff([0, *sorted(rng.choice(999, 20, replace=False) + 1), 1000]))):
        stats = FeatureStats()
        for part in np.split(x, np.cumsum(cuts)[:-1]):
            stats.update(part)
        assert stats.n == 1000
        np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-13)
        np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)


def test_fid_of_a_set_against_itself_is_zero_and_a_shift_adds_its_squared_norm():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(800, 5)) @ rng.normal(size=(5, 5))
    stats = FeatureStats.of(x)
    assert abs(frechet_distance(stats, stats)) < 1e-9 * np.trace(stats.cov)
    shift = np.array([0.3, -1.0, 0.0, 2.0, 0.5])
    # Same covariance: the trace term vanishes, FID = ||shift||^2 exactly.
    assert frechet_distance(FeatureStats.of(x + shift), stats) == pytest.approx(float(shift @ shift), rel=1e-7)


def test_fid_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(2)
    d = 4
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    a, b = _exact_moments(rng, 500, mu1, s1), _exact_moments(rng, 700, mu2, s2)
    expected = _closed_form_fid(mu1, s1, mu2, s2)
    assert frechet_distance(FeatureStats.of(a), FeatureStats.of(b)) == pytest.approx(expected, rel=1e-7)
    # FID grows with the mean shift as ||delta||^2 on top of the covariance term.
    for scale in (1.0, 2.0, 4.0):
        shifted = FeatureStats.of(a + scale * (mu2 - mu1))
        cov_term = expected - float(np.sum((mu1 - mu2) ** 2))
        assert frechet_distance(shifted, FeatureStats.of(b)) == pytest.approx(
            cov_term + (1 - scale) ** 2 * float(np.sum((mu1 - mu2) ** 2)), rel=1e-6
        )


def _unbiased_poly_mmd(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], len(x)
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


def test_kid_with_whole_sets_is_the_unbiased_mmd_and_subsets_are_seeded_locally():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 0.4
    assert kernel_distance(x, y, subsets=3, subset_size=1000) == pytest.approx(_unbiased_poly_mmd(x, y), rel=1e-10)
    state = np.random.get_state()
    first = kernel_distance(x, y[:150], subsets=5, subset_size=100, seed=7)
    assert kernel_distance(x, y[:150], subsets=5, subset_size=100, seed=7) == first
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2] == state[2]


@pytest.mark.parametrize("dim", [2, 64])
def test_kid_equals_clean_fids_kernel_distance_on_the_same_seed(dim):
    """The subsets are clean-fid's draws (numpy's legacy generator seeded with `seed`), so the
    value is clean-fid's own, recomputed here with its global generator seeded the same way."""
    from cleanfid.fid import kernel_distance as cleanfid_kernel

    rng = np.random.default_rng(dim)
    generated, real = rng.normal(size=(700, dim)), rng.normal(size=(500, dim)) + 0.2
    state = np.random.get_state()
    try:
        np.random.seed(11)
        expected = cleanfid_kernel(generated, real, num_subsets=7, max_subset_size=300)
    finally:
        np.random.set_state(state)
    assert kernel_distance(generated, real, subsets=7, subset_size=300, seed=11) == pytest.approx(expected, rel=1e-12)
    assert kernel_distance(generated, real, subsets=7, subset_size=300, seed=12) != pytest.approx(expected, rel=1e-6)


class _Tanh(torch.nn.Module):
    """A small fixed feature network (any torch module can be an extractor)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 6, dtype=torch.float64)

    def forward(self, x):
        return torch.tanh(self.linear(x))


@pytest.mark.parametrize("extractor", [raw_features(batch_size=64), module_features(_Tanh(), "tanh-net", batch_size=50)])
def test_clean_fid_and_torchmetrics_agree_on_the_same_features(extractor):
    rng = np.random.default_rng(4)
    generated = torch.from_numpy(rng.normal(size=(300, 3)) * [1.0, 0.5, 2.0])
    real = torch.from_numpy(rng.normal(size=(300, 3)) + [0.5, 0.0, -0.3])
    requested = np.arange(300) % 3
    kwargs = dict(value_names=["a", "b", "c"], kid_subsets=2, kid_subset_size=1000, seed=0)
    clean = quality_metrics(generated, requested, real, extractor, backend="clean-fid", **kwargs)
    tm = quality_metrics(generated, requested, real, extractor, backend="torchmetrics", **kwargs)
    assert clean["fid_features"] == tm["fid_features"] == extractor.name
    assert tm["fid"] == pytest.approx(clean["fid"], rel=1e-3)
    assert set(clean["fid_by_group"]) == set(tm["fid_by_group"]) == {"a", "b", "c"}
    for name, value in clean["fid_by_group"].items():
        assert tm["fid_by_group"][name] == pytest.approx(value, rel=1e-3)
    assert tm["kid"] == pytest.approx(clean["kid"], rel=1e-3)  # whole sets: both are exact
    # And both equal a direct recomputation from the features.
    fg, fr = extractor(generated).numpy(), extractor(real).numpy()
    direct = _closed_form_fid(fg.mean(0), np.cov(fg, rowvar=False), fr.mean(0), np.cov(fr, rowvar=False))
    assert clean["fid"] == pytest.approx(direct, rel=1e-6)
    group = fg[requested == 1]
    assert clean["fid_by_group"]["b"] == pytest.approx(
        _closed_form_fid(group.mean(0), np.cov(group, rowvar=False), fr.mean(0), np.cov(fr, rowvar=False)), rel=1e-6
    )


def test_unknown_backend_and_too_few_samples_are_refused():
    x = torch.zeros(4, 2)
    with pytest.raises(FairbenchError, match="Did you mean: torchmetrics"):
        quality_metrics(x, np.zeros(4), x, raw_features(), value_names=["a"], backend="torchmetric")
    with pytest.raises(FairbenchError, match="at least 2 generated"):
        quality_metrics(x[:1], np.zeros(1), x, raw_features(), value_names=["a"])


def test_extractor_batches_on_its_device_and_returns_float64_rows():
    calls = []
    extractor = FeatureExtractor("probe", lambda x: calls.append(len(x)) or x[:, :2] * 2, batch_size=3)
    out = extractor(torch.arange(24, dtype=torch.float32).reshape(8, 3))
    assert calls == [3, 3, 2] and out.dtype == torch.float64 and out.shape == (8, 2)
    assert torch.equal(out[:, 0], torch.arange(0, 24, 3, dtype=torch.float64) * 2)


def test_missing_inception_is_one_clear_error_naming_file_and_folder(tmp_path):
    with pytest.raises(FairbenchError) as info:
        inception_features(search=[tmp_path])
    message = str(info.value)
    assert "\n" not in message and CLEANFID_FILE in message and STATE_DICT_FILES[0] in message and str(tmp_path) in message
    default = missing_inception_message()
    assert f"{cleanfid_dir()}/" in default and f"{torch_hub_checkpoints()}/" in default and "never downloads" in default


def test_inception_state_dict_is_found_and_loaded_weights_only(tmp_path):
    torch.manual_seed(0)
    torch.save(pytorch_fid_inception().state_dict(), tmp_path / STATE_DICT_FILES[1])
    extractor = inception_features(search=[tmp_path], batch_size=2)
    assert extractor.name == "inception-v3-pytorch-fid"
    grey = torch.rand(3, 1, 8, 8) * 2 - 1  # grey 8x8 images in [-1, 1]: resized to 299, repeated to RGB
    features = extractor(grey)
    assert features.shape == (3, 2048) and torch.isfinite(features).all()
    assert torch.allclose(features, extractor(grey.repeat(1, 3, 1, 1)))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_inception_torchscript_file_is_used_first(tmp_path):
    class Base(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2048))

        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return self.layers(x)

    torch.jit.script(Base()).save(str(tmp_path / CLEANFID_FILE))
    (tmp_path / STATE_DICT_FILES[0]).write_bytes(b"not a state dict")
    extractor = inception_features(search=[tmp_path])
    assert extractor.name == "inception-v3"
    assert extractor(torch.zeros(2, 3, 16, 16)).shape == (2, 2048)


def test_a_broken_state_dict_is_refused_with_its_path(tmp_path):
    (tmp_path / STATE_DICT_FILES[0]).write_bytes(b"not a state dict")
    with pytest.raises(FairbenchError, match="is not the pytorch-fid Inception-v3 state dict"):
        inception_features(search=[tmp_path])


def _two_values(rng, n: int, dim: int = 3):
    """Real data of two sensitive values 3 units apart in the first coordinate, labels 0/1."""
    labels = np.arange(n) % 2
    return torch.from_numpy(rng.normal(size=(n, dim)) + np.outer(labels, [3.0] + [0.0] * (dim - 1))), labels


@pytest.mark.parametrize("backend", ["clean-fid", "torchmetrics"])
def test_each_group_is_compared_with_the_real_images_of_the_value_it_carries(backend):
    rng = np.random.default_rng(5)
    real, real_labels = _two_values(rng, 600)
    generated, carried = _two_values(rng, 400)  # a second draw of the same two values
    kwargs = dict(value_names=["a", "b"], kid_subsets=3, kid_subset_size=1000, seed=0, backend=backend,
                  real_labels=real_labels)
    right = quality_metrics(generated, carried, real, raw_features(), carried=carried, **kwargs)
    # Planted wrong value: every sample claims to carry the other value.
    wrong = quality_metrics(generated, carried, real, raw_features(), carried=1 - carried, **kwargs)
    for name in ("a", "b"):
        # Real vs real of the same value: sampling error only (its mean term alone is about
        # d (1/n_g + 1/n_r) = 0.025, the covariance term a few times that), far from the 9 below.
        assert right["fid_by_group"][name] < 0.3
        assert wrong["fid_by_group"][name] > 8.0  # ||3 e_1||^2 = 9 apart in the mean
        assert wrong["kid_by_group"][name] > 50 * abs(right["kid_by_group"][name])
        assert right["quality_groups"][name]["real"] == f"real images of {name!r}"
        assert right["quality_groups"][name]["n_real"] == 300 and right["quality_groups"][name]["n_generated"] == 200
    fg, fr = generated.numpy(), real.numpy()
    group, reference = fg[carried == 1], fr[real_labels == 1]
    direct = _closed_form_fid(group.mean(0), np.cov(group, rowvar=False), reference.mean(0), np.cov(reference, rowvar=False))
    assert right["fid_by_group"]["b"] == pytest.approx(direct, rel=1e-3)


def test_a_group_with_too_few_images_for_the_feature_dimension_gets_no_fid_and_says_why():
    rng = np.random.default_rng(6)
    real, real_labels = _two_values(rng, 60, dim=20)  # 30 real images per value, 20 dimensions: needs 40
    generated, carried = _two_values(rng, 200, dim=20)
    out = quality_metrics(generated, carried, real, raw_features(), value_names=["a", "b"], kid_subsets=3,
                          carried=carried, real_labels=real_labels)
    assert out["fid_by_group"] == {"a": None, "b": None}
    assert "30 images on one side for 20 feature dimensions (needs 40)" in out["quality_groups"]["a"]["fid"]
    assert all(np.isfinite(v) for v in out["kid_by_group"].values())  # KID is still given
    assert np.isfinite(out["fid"])  # 60 real images overall: enough


# ---------------------------------------------------------------------------------------------
# Streamed statistics: FID from per-group sums, KID from a uniform subset of rows.


def test_streamed_quality_equals_the_full_computation_and_reuses_given_features():
    from fairbench.metrics.quality import kernel_distance

    rng = np.random.default_rng(0)
    generated = torch.from_numpy(rng.normal(size=(300, 3)) + 0.3)
    real = torch.from_numpy(rng.normal(size=(260, 3)))
    carried, real_labels = np.arange(300) % 2, np.arange(260) % 2
    extractor = raw_features(batch_size=64)
    kwargs = dict(value_names=["a", "b"], kid_subsets=20, kid_subset_size=50, seed=3, carried=carried,
                  real_labels=real_labels)
    out = quality_metrics(generated, carried, real, extractor, **kwargs)
    fg, fr = generated.numpy(), real.numpy()
    assert out["fid"] == pytest.approx(frechet_distance(FeatureStats.of(fg), FeatureStats.of(fr)), rel=1e-9)
    for a, name in enumerate(["a", "b"]):
        gi, ri = carried == a, real_labels == a
        assert out["fid_by_group"][name] == pytest.approx(
            frechet_distance(FeatureStats.of(fg[gi]), FeatureStats.of(fr[ri])), rel=1e-9)
        assert out["kid_by_group"][name] == kernel_distance(fg[gi], fr[ri], subsets=20, subset_size=50, seed=3)
    assert out["kid"] == kernel_distance(fg, fr, subsets=20, subset_size=50, seed=3)
    # Features the caller already has give the same numbers without extracting again.
    calls = []
    counting = FeatureExtractor("raw", lambda x: calls.append(len(x)) or x.reshape(len(x), -1), "cpu", 64)
    again = quality_metrics(generated, carried, real, counting, generated_features=fg, **kwargs)
    assert again == out and sum(calls) == len(real)


def test_kid_from_a_capped_subset_of_rows_keeps_its_expectation_and_fid_is_unchanged():
    from fairbench.metrics.quality import kernel_distance

    rng = np.random.default_rng(1)
    generated = torch.from_numpy(rng.normal(size=(2000, 4)) + 0.5)
    real = torch.from_numpy(rng.normal(size=(2000, 4)))
    exact = kernel_distance(generated.numpy(), real.numpy(), subsets=1, subset_size=2000)  # the unbiased MMD^2
    kwargs = dict(value_names=["a", "b"], kid_subsets=100, kid_subset_size=200)
    full = quality_metrics(generated, np.arange(2000) % 2, real, raw_features(), seed=0, **kwargs)
    capped = [quality_metrics(generated, np.arange(2000) % 2, real, raw_features(), seed=s, kid_max_rows=400, **kwargs)
              for s in range(3)]
    assert all(c["fid"] == pytest.approx(full["fid"], rel=1e-9) for c in capped)
    # 300 subsets of 200 rows over three seeds: their mean lies within 10% of the exact MMD^2
    # (its standard deviation is under 3% here).
    assert np.mean([c["kid"] for c in capped]) == pytest.approx(exact, rel=0.1)
    assert full["kid"] == pytest.approx(exact, rel=0.1)
