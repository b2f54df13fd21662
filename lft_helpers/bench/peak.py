"""The machine's yardstick: the best matmul rate it reaches, and its matrix instruction sets."""

from __future__ import annotations

from ..runtime import cpu_flags, device_name, torch_dtype

# /proc/cpuinfo flags of the CPU's matrix units, from the widest down (issue: AMX and
# AVX-512 BF16 machines differ in what limits the model).
MATRIX_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def measure_matmul_peak(
    precision: str = "fp32", *, size: int | None = None, repeats: int = 5
) -> dict:
    """Best-of-`repeats` GFLOP/s of one square matmul: the yardstick for the model's speed."""
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
    best = min(timer.timeit(1).times[0] for _ in range(repeats))
    return {"precision": precision, "size": size, "gflops": round(2 * size**3 / best / 1e9, 2)}


def measure_peaks(precisions) -> dict:
    return {p: measure_matmul_peak(p) for p in sorted(set(precisions))}


def best_peaks(first: dict, second: dict) -> dict:
    """Per precision, the faster of two readings, keeping both for the record."""
    out = {}
    for p in first:
        best = max(first[p], second[p], key=lambda r: r["gflops"])
        out[p] = {**best, "readings": [first[p]["gflops"], second[p]["gflops"]]}
    return out


def matrix_instruction_sets(flags=None) -> list[str]:
    """Which of `MATRIX_FLAGS` this CPU has (`flags`: a CPU's flags, by default this one's
    from `runtime.cpu_flags`; empty where /proc/cpuinfo cannot be read)."""
    flags = cpu_flags() if flags is None else set(flags)
    return [flag for flag in MATRIX_FLAGS if flag in flags]
