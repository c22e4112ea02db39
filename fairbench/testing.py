"""pytest plugin: regression checks of fairbench records inside a user's own test suite.

The ``fairbench_check`` fixture is a function ``(run_dir, baseline, **options) -> CheckResult``
that runs the same comparison as ``fairbench check`` and fails the calling test with the table
of what moved::

    def test_no_fairness_regression(tmp_path, fairbench_check):
        run_benchmark(load_config("baselines/gaussian.toml"), tmp_path)
        fairbench_check(tmp_path, "leaderboards/gaussian", tolerance={"tau": 20})

Options are the keys of the ``[check]`` table (``k``, ``exact``, ``match``, ``fail_on``,
``exclude``, ``tolerance``, ``training_spread``, ``allow_missing``; see `fairbench.check`). Bad options or
unreadable records raise `FairbenchError` (an error, not a failure, of the test).

Installed fairbench registers this plugin through its ``pytest11`` entry point, named
``fairbench.testing``; without the installed package, add
``pytest_plugins = ["fairbench.testing"]`` to the root ``conftest.py`` (the same name, so
both together load it once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .check import CheckResult, check_directories, parse_check


def assert_no_regression(run_dir: str | Path, baseline: str | Path, **options: Any) -> CheckResult:
    """Compare `run_dir`'s records with `baseline`'s; fail the current test when any metric moved."""
    result = check_directories(run_dir, baseline, parse_check(options))
    if not result.passed:
        pytest.fail(f"fairbench check: {result.summary()}\n{result.table()}", pytrace=False)
    return result


@pytest.fixture
def fairbench_check():
    """``fairbench_check(run_dir, baseline, **options)``: see `assert_no_regression`."""
    return assert_no_regression
