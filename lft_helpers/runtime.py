"""The machine: device, mixed precision, threads, and peak-memory measurement."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import threading
import time

import psutil


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def _cpuinfo() -> str:
    """/proc/cpuinfo, read once per process ('' where there is none, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def cpuinfo_field(name: str) -> str | None:
    """The first processor's value of a /proc/cpuinfo field ('model name', 'flags'), or None."""
    for line in _cpuinfo().splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() == name:
            return value.strip()
    return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (avx2, avx512_bf16, amx_tile, ...); empty where
    /proc/cpuinfo cannot be read."""
    return frozenset((cpuinfo_field("flags") or "").split())


def cpu_supports_bf16() -> bool:
    """bf16 autocast pays off on CPUs with native bf16 (AVX512-BF16 or AMX) only."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def gpu_supports_bf16() -> bool:
    """bf16 in hardware: compute capability 8.0 (Ampere) and up, or a ROCm GPU.

    Not `torch.cuda.is_bf16_supported()`: by default it also answers True where bf16 is only
    emulated (a T4, capability 7.5), which runs several times slower than fp16 there.
    """
    import torch

    if torch.version.hip:  # torch counts every ROCm GPU it supports as native bf16
        return torch.cuda.is_bf16_supported()
    return tuple(torch.cuda.get_device_capability()) >= (8, 0)


def resolve_precision(requested: str = "auto") -> str:
    """fp32, bf16 or fp16: bf16 where the hardware has it natively, fp16 on older GPUs."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if gpu_supports_bf16() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def torch_dtype(precision: str):
    """The torch dtype of a resolved precision name: fp32, bf16 or fp16."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(precision: str):
    """An autocast context for `precision` on the current device (no-op for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_name(), dtype=torch_dtype(precision))


def cpu_name() -> str:
    """The CPU's model name (psutil does not report it, so /proc/cpuinfo where there is one)."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


def release_free_memory() -> None:
    """Hand freed heap back to the OS so the next RSS reading starts from what is in use."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak on GPU, sampled process RSS on CPU."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.start_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, _rss_mb())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start_mb = torch.cuda.memory_allocated() / 1e6
            return self
        release_free_memory()
        self.start_mb = self.peak_mb = _rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.cuda:
            self.peak_mb = torch.cuda.max_memory_allocated() / 1e6
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


def usable_cpus() -> int:
    """CPUs this process may run on (cgroup/affinity aware, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure_threads(threads: int | None = None) -> int:
    """One intra-op thread per usable CPU unless told otherwise; return the count in effect.

    More threads than CPUs oversubscribes the cores and slows every matmul down.
    """
    import torch

    torch.set_num_threads(max(1, threads or usable_cpus()))
    return torch.get_num_threads()


def process_rank() -> int:
    """This process's rank under torchrun / accelerate launch (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Only rank 0 writes files, so N processes leave one set of results."""
    return process_rank() == 0


def peak_rss_mb() -> float:
    """The kernel's high-water mark of this process's resident memory (VmHWM), in MB.

    Unlike `ru_maxrss`, it starts afresh at exec, so a child does not inherit its parent's peak;
    psutil does not expose it, hence /proc.
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


_freed_memory_kept = False


def configure_allocator(keep_freed: bool) -> bool:
    """On a CPU, keep freed memory for reuse if `keep_freed` (see `keep_freed_memory`); whether
    this process keeps it. Process-wide and never undone (glibc offers no way back to its
    adaptive defaults), so once kept it stays kept, and the answer says so even where
    `keep_freed` is False: a results file must not claim the default allocator then."""
    global _freed_memory_kept
    if keep_freed and not _freed_memory_kept and device_name() == "cpu":
        _freed_memory_kept = keep_freed_memory()
    return _freed_memory_kept


def keep_freed_memory() -> bool:
    """Stop glibc handing large freed blocks back to the OS (False where not glibc).

    Each training step allocates and frees activations of hundreds of MB; by default every
    one is a fresh mmap whose pages the kernel zeroes again, which costs a third of the CPU
    time of a CPU training step. The price: resident memory stays at its peak.
    """
    import ctypes

    m_trim_threshold, m_mmap_max = -1, -4
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(m_mmap_max, 0) == 1
    return ok and libc.mallopt(m_trim_threshold, 2**31 - 1) == 1
