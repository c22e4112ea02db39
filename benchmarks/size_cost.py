"""What image size costs: the generator's training step and sampling step per sample, and one
default-style job's sampling time and peak memory, at 8x8 (digits), 14x14 and 28x28.

    OMP_NUM_THREADS=1 python benchmarks/size_cost.py [--json OUT]

Each size runs in a fresh process with one torch thread. Times are CPU seconds of that
process (`time.process_time`), so a machine shared with other work slows the wall clock but
not these numbers (much). The generators are randomly initialised `UNet2DModel`s of the
architectures the configs train (a step costs the same whatever the weights):

- training: one AdamW step of the epsilon loss on a batch of 64, per sample;
- sampling: one DDIM step of the class-conditional UNet on a batch of 500 (the benchmark
  configs' batch size), per sample;
- a default-style job: 1000 samples, DDIM 50 steps, batches of 500, i.e. 100 batch steps;
  its time is the measured per-step time x 100 (three steps are timed, after one warm-up);
  peak memory is the process's resident-set high-water mark (``VmHWM``) during those steps,
  above what it held before (model, inputs and torch's own allocations excluded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = [  # (label, side, block_out_channels)
    ("digits 8x8, [32, 64] (digits.toml)", 8, [32, 64]),
    ("Fashion-MNIST 14x14, [32, 64] (fashion.toml)", 14, [32, 64]),
    ("14x14, [16, 32]", 14, [16, 32]),
    ("28x28, [16, 32]", 28, [16, 32]),
    ("28x28, [32, 64]", 28, [32, 64]),
    ("28x28, [32, 64, 64]", 28, [32, 64, 64]),
]

CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from diffusers import DDIMScheduler
from fairbench.train import UNetTraining, build_unet, initialised

side, widths = int(sys.argv[1]), json.loads(sys.argv[2])
unet = initialised(0, lambda: build_unet(UNetTraining(block_out_channels=widths), (1, side, side), 3))
g = torch.Generator().manual_seed(0)

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

# training: batch 64
optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)
x = torch.randn(64, 1, side, side, generator=g); t = torch.randint(1000, (64,), generator=g); c = torch.randint(3, (64,), generator=g)
times = []
for i in range(4):
    start = time.process_time()
    loss = torch.nn.functional.mse_loss(unet(x, t, class_labels=c).sample, x)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    times.append(time.process_time() - start)
train_step = min(times[1:])

# sampling: batch 500, DDIM steps
unet.eval().requires_grad_(False)
scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear"); scheduler.set_timesteps(50)
x = torch.randn(500, 1, side, side, generator=g); c = torch.randint(3, (500,), generator=g)
with torch.no_grad():
    unet(x, scheduler.timesteps[0], class_labels=c)  # warm-up
    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    times = []
    for step in scheduler.timesteps[1:4]:
        start = time.process_time()
        eps = unet(x, step, class_labels=c).sample
        x = scheduler.step(eps, step, x).prev_sample
        times.append(time.process_time() - start)
    peak = status("VmHWM") - before
sample_step = sum(times) / len(times)
print(json.dumps({"train_s_per_sample_step": train_step / 64, "sample_s_per_sample_step": sample_step / 500,
                  "job_s": sample_step * 100, "job_peak_mib": peak,
                  "params_m": sum(p.numel() for p in unet.parameters()) / 1e6}))
"""


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    results = {}
    print("| size, generator | parameters | training, CPU ms per sample and step | sampling, CPU ms per sample and step "
          "| 1000 samples x DDIM 50, CPU s | its peak memory, MiB |")
    print("|---|---|---|---|---|---|")
    for label, side, widths in CASES:
        out = subprocess.run([sys.executable, "-c", CHILD, str(side), json.dumps(widths)], check=True,
                             capture_output=True, text=True).stdout
        r = results[label] = json.loads(out.strip().splitlines()[-1])
        print(f"| {label} | {r['params_m']:.2f} M | {1e3 * r['train_s_per_sample_step']:.2f} | "
              f"{1e3 * r['sample_s_per_sample_step']:.3f} | {r['job_s']:.0f} | {r['job_peak_mib']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
