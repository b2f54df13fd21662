"""The machine's yardstick: the matmul rate it sustains, and its matrix instruction sets."""

from __future__ import annotations

import statistics

from ..runtime import cpu_flags, device_name, torch_dtype

# /proc/cpuinfo flags of the CPU's matrix units, from the widest down (issue: AMX and
# AVX-512 BF16 machines differ in what limits the model).
MATRIX_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def measure_matmul_peak(
    precision: str = "fp32", *, size: int | None = None, repeats: int = 5, window_s: float = 2.0
) -> dict:
    """One reading of the machine's matmul rate at `precision`, in GFLOP/s of one square
    matmul: `gflops`, the median over `window_s` seconds of back-to-back products (what a
    workload of minutes can count on), and `burst`, the best of `repeats` single products."""
    import torch
    from torch.utils.benchmark import Timer

    device = device_name()
    size = size or (8192 if device == "cuda" else 2048)
    dtype = torch_dtype(precision)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    # Timer warms up, synchronises CUDA and keeps this process's thread count.
    timer = Timer(
        "torch.mm(a, b)",
        globals={"torch": torch, "a": a, "b": b},
        num_threads=torch.get_num_threads(),
    )
    flop = 2 * size**3
    burst = min(timer.timeit(1).times[0] for _ in range(repeats))
    sustained = timer.blocked_autorange(min_run_time=window_s).median
    return {
        "precision": precision,
        "size": size,
        "gflops": round(flop / sustained / 1e9, 2),
        "burst": round(flop / burst / 1e9, 2),
    }


def measure_peaks(precisions) -> dict:
    return {p: measure_matmul_peak(p) for p in sorted(set(precisions))}


def combine_peaks(readings: list[dict]) -> dict:
    """Per precision, the yardstick of a run from readings taken across it: the median of
    their sustained rates. The best single product is kept (`best_burst`) but not used: on a
    shared machine it can read twice the rate the machine holds for longer than a moment
    (docs/performance.md), and every share of it would understate the work measured."""
    out = {}
    for p in readings[0]:
        sustained = [r[p]["gflops"] for r in readings]
        bursts = [r[p]["burst"] for r in readings]
        out[p] = {
            "precision": p,
            "size": readings[0][p]["size"],
            "gflops": round(statistics.median(sustained), 2),
            "readings": sustained,
            "best_burst": max(bursts),
            "burst_readings": bursts,
        }
    return out


def matrix_instruction_sets(flags=None) -> list[str]:
    """Which of `MATRIX_FLAGS` this CPU has (`flags`: a CPU's flags, by default this one's
    from `runtime.cpu_flags`; empty where /proc/cpuinfo cannot be read)."""
    flags = cpu_flags() if flags is None else set(flags)
    return [flag for flag in MATRIX_FLAGS if flag in flags]
