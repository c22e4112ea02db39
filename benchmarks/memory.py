"""Peak memory of one benchmark job as n_samples grows (run: python benchmarks/memory.py).

Each size runs in a fresh process: a 3072-dimensional analytic Gaussian model (the size of a
3x32x32 image), DDIM 20 steps, shards of 1000 samples, epsilon on a fixed 16-dimensional
projection (as a judge's features would be). The samples themselves (n x 3072 float64) would
take n * 24 KiB if held in memory; the harness keeps only the current shard and the features.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, sys, tempfile
from pathlib import Path
import torch
from fairbench.config import parse_config
from fairbench.runner import Job, run_cell
torch.set_num_threads(2)
n = int(sys.argv[1]); d = 3072
config = parse_config({
    "benchmark": {"name": "memory", "n_samples": n, "batch_size": 500, "shard_size": 1000},
    "model": {"kind": "gaussian", "means": [[-0.01] * d, [0.01] * d], "std": 0.5},
    "sampler": {"scheduler": "ddim", "steps": 20},
    "methods": [{"name": "attribute_switching", "tau": 300}],
    "metrics": {"bootstrap": 200},
})
setup = config.model_spec().build()
setup.real = None  # quality metrics are measured by the FID benchmarks
projection = torch.randn(d, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
setup.features = lambda x: x.reshape(len(x), -1) @ projection
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

before = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
with tempfile.TemporaryDirectory() as out:
    record = run_cell(Job(config, 0, 0), setup, Path(out), device="cpu")
after = status("VmHWM")
print(json.dumps({"n": n, "peak_rss_mb": after, "growth_mb": after - before,
                  "samples_mb_if_held": n * d * 8 / 2**20, "epsilon": record["metrics"]["epsilon"]}))
"""


def main(sizes=(1000, 4000, 16000)) -> None:
    print("| n_samples | peak RSS (MiB) | growth during the job (MiB) | samples if held (MiB) |")
    print("|---|---|---|---|")
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {row['n']} | {row['peak_rss_mb']:.0f} | {row['growth_mb']:.0f} | {row['samples_mb_if_held']:.0f} |")


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or (1000, 4000, 16000))
