"""epsilon for every pair of requested values, from a finished run's samples.

    python tools/pairwise_epsilon.py CONFIG RESULTS_DIR

A record's `epsilon` is the largest pairwise value (for k > 2). This recomputes the estimator
of the run (`fairbench.metrics.fairness.epsilon_fairness`, the same feature spaces and
`[metrics]` options, the record's seed) on each pair of requested groups alone, from the
samples the run kept (`RESULTS_DIR/shards/`), and prints one markdown row per record.
"""

from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

from fairbench.config import load_config
from fairbench.metrics.features import raw_features
from fairbench.metrics.fairness import epsilon_fairness, raw_space_helps
from fairbench.metrics.suite import SuiteOptions, setup_features
from fairbench.runner import requested_values
from fairbench.shards import ShardedSamples


def main(config_path: str, results: str) -> None:
    config = load_config(config_path)
    setup = config.model_spec().build(device="cpu", dataset=config.dataset)
    options = SuiteOptions.from_config(config.metrics)
    names = tuple(setup.model.attribute_names)
    k = len(names)
    pairs = list(combinations(range(k), 2))
    print("| method | " + " | ".join(f"epsilon {names[a]}-{names[b]}" for a, b in pairs) + " | epsilon (record) |")
    print("|---|" + "---|" * (len(pairs) + 1))
    for path in sorted(Path(results, "records").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        samples = ShardedSamples.from_folder(Path(results, "shards", path.stem))
        if samples is None:
            continue
        samples = samples[0:len(samples)]  # one tensor: the pairs index into it
        requested = requested_values(len(samples), k).numpy()
        spaces = {setup.feature_name: setup_features(setup, batch_size=options.feature_batch_size)(samples).numpy()}
        if raw_space_helps(setup.feature_name, tuple(samples.shape[1:])):
            spaces["raw"] = raw_features(batch_size=options.feature_batch_size)(samples).numpy()
        seed = record["provenance"]["seed"]
        cells = []
        for a, b in pairs:
            rows = np.flatnonzero((requested == a) | (requested == b))
            estimate = epsilon_fairness(
                {name: space[rows] for name, space in spaces.items()}, requested[rows],
                learners=tuple(options.epsilon_learners), folds=options.epsilon_folds, repeats=options.epsilon_repeats,
                subsamples=options.epsilon_subsamples, permutations=options.epsilon_permutations,
                confidence=options.confidence, bootstrap=options.bootstrap, seed=seed,
            )
            cells.append(f"{estimate.value:.3f} [{estimate.interval[0]:.3f}, {estimate.interval[1]:.3f}]")
        print(f"| {record['label']} | " + " | ".join(cells) + f" | {record['metrics']['epsilon']:.3f} |", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
