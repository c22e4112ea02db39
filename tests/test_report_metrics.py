"""`fairbench report metrics`: the validation report's structure, its CLI and the closed forms behind it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fairbench import report
from fairbench.cli import main
from fairbench.metrics.known_truth import identical, mean_shift, mixture_weights, variance_ratio, xor
from fairbench.report import ValidationSettings, metrics_validation_report

TINY = ValidationSettings(sizes=(60,), draws=2, coverage_sizes=(60,), coverage_draws=2)


def _monte_carlo_tv(log_density_0, log_density_1, samples_0: np.ndarray) -> float:
    """TV = E_{x ~ p_0}[max(0, 1 - p_1(x) / p_0(x))], estimated from samples of p_0."""
    ratio = np.exp(log_density_1(samples_0) - log_density_0(samples_0))
    return float(np.mean(np.maximum(0.0, 1.0 - ratio)))


def _log_normal(x, mean, var):
    d = x.shape[1]
    return -0.5 * np.sum((x - mean) ** 2, axis=1) / var - 0.5 * d * math.log(2 * math.pi * var)


def _log_mixture(x, means, weights):
    return np.logaddexp.reduce([math.log(w) + _log_normal(x, np.asarray(m, float), 1.0) for m, w in zip(means, weights)], axis=0)


@pytest.mark.parametrize(
    "case, log_0, log_1",
    [
        (mean_shift(1.0), lambda x: _log_normal(x, [-0.5, 0], 1.0), lambda x: _log_normal(x, [0.5, 0], 1.0)),
        (variance_ratio(4.0), lambda x: _log_normal(x, 0.0, 1.0), lambda x: _log_normal(x, 0.0, 4.0)),
        (variance_ratio(1.5, dim=64), lambda x: _log_normal(x, 0.0, 1.0), lambda x: _log_normal(x, 0.0, 1.5)),
        (mixture_weights(), lambda x: _log_mixture(x, [[-2, 0], [2, 0]], [0.5, 0.5]),
         lambda x: _log_mixture(x, [[-2, 0], [2, 0]], [0.8, 0.2])),
        (xor(1.5), lambda x: _log_mixture(x, [[1.5, 1.5], [-1.5, -1.5]], [0.5, 0.5]),
         lambda x: _log_mixture(x, [[1.5, -1.5], [-1.5, 1.5]], [0.5, 0.5])),
        (identical(), lambda x: _log_normal(x, 0.0, 1.0), lambda x: _log_normal(x, 0.0, 1.0)),
    ],
    ids=lambda value: getattr(value, "name", ""),
)
def test_closed_form_tv_agrees_with_monte_carlo_of_the_densities(case, log_0, log_1):
    # The draws and the closed form are checked against each other: samples of group 0 from
    # the case's own sampler, densities written out independently.
    samples, requested = case.sample(100_000, seed=0)
    estimate = _monte_carlo_tv(log_0, log_1, samples[requested == 0])
    assert estimate == pytest.approx(case.tv, abs=0.01)


def test_report_is_the_concatenation_of_its_sections(monkeypatch):
    monkeypatch.setattr(report, "METRICS_VALIDATION_SECTIONS",
                        [*report.METRICS_VALIDATION_SECTIONS, lambda settings: f"## extra section, {settings.draws} draws\n"])
    text = metrics_validation_report(TINY)
    assert text.startswith("# Measurements against known truth")
    assert text.index("## epsilon against closed-form total variation") < text.index("## extra section, 2 draws")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "(2 draws)" in line]
    assert len(rows) == 6 and all(" 60 " in row for row in rows)


def test_cli_refuses_bad_draws_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "validation.md"
    assert main(["report", "metrics", "--draws", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench: error: ") and "--draws" in err and not out.exists()


@pytest.mark.slow
def test_cli_writes_the_report(tmp_path, capsys):
    out = tmp_path / "validation.md"
    assert main(["report", "metrics", "--draws", "1", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert "## epsilon against closed-form total variation" in out.read_text()


def test_utility_ranks_planted_sample_sets_and_noise_with_blind_labels_is_at_chance():
    from fairbench.report import ValidationSettings, utility_controls_rows

    rows = {row["case"]: row for row in utility_controls_rows(ValidationSettings(draws=2))}
    fraction = [rows[name]["fraction"] for name in (
        "real training digits, true labels", "blurred digits (sigma 1 px), judge labels",
        "uniform noise, judge labels", "uniform noise, labels ignoring the samples")]
    assert fraction[0] == pytest.approx(1.0)
    assert fraction[0] > fraction[1] > fraction[2] > fraction[3]
    assert rows["uniform noise, labels ignoring the samples"]["accuracy"] < 0.2  # chance is 0.1
