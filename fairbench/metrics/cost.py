"""Cost of a run: peak memory while sampling (NFE and wall time come from the sampler).

``peak_mem_mb`` (MiB) depends on the device, and the record says which (``peak_mem_basis``):

- ``"cuda_max_allocated"``: ``torch.cuda.max_memory_allocated`` over the block, after
  resetting the peak counter at its start: everything torch held on the GPU at the peak,
  model weights included.
- ``"rss_peak_growth"``: peak resident set size of the process during the block minus the
  resident size at its start, after the C allocator's free memory is returned to the system
  (glibc ``malloc_trim``; otherwise memory an earlier stage left cached would be reused
  without growth, and the value would depend on what ran before). The runner samples two
  samples for two steps once per model before any job, so the process's one-time
  allocations are not charged to the first job. On Linux the kernel's high-water mark is reset at the start
  (``/proc/self/clear_refs``, value 5) and read from ``VmHWM``, so the peak is the block's
  own. Elsewhere it is the growth of ``resource.getrusage().ru_maxrss``, which is 0 when the
  block stays below an earlier peak of the process (a lower bound).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import resource
import sys
from pathlib import Path

import torch

MIB = 2**20


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once (finding the C library runs ldconfig); None elsewhere."""
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def _release_free_memory() -> None:
    """Return the C allocator's free memory to the system (glibc's ``malloc_trim``), so that the
    block's peak growth is its own working memory, not what an earlier stage happened to leave
    cached in the allocator (which differs with the number of threads that stage used)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class PeakMemory:
    """``with PeakMemory(device) as memory: ...``; then ``memory.mb`` and ``memory.basis``."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.mb: float | None = None
        self.basis = "cuda_max_allocated" if self.device.type == "cuda" else "rss_peak_growth"

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        _release_free_memory()
        rss = _proc_status_kib("VmRSS")
        self._hwm = rss is not None and _reset_rss_peak()
        self._start = rss * 1024 if self._hwm else _maxrss_bytes()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / MIB
            return
        peak = _proc_status_kib("VmHWM") * 1024 if self._hwm else _maxrss_bytes()
        self.mb = max(0, peak - self._start) / MIB

    def exclude(self, nbytes: int) -> None:
        """Leave out memory the block kept for later work, not for its own (the sampler's
        `fairbench.sampling.PrefixCache` states): the peak is taken less those bytes."""
        if self.mb is not None:
            self.mb = max(0.0, self.mb - nbytes / MIB)

    def as_metrics(self) -> dict:
        return {"peak_mem_mb": self.mb, "peak_mem_basis": self.basis}
