"""Mixed precision follows what the hardware computes natively, never what it only emulates."""

import subprocess
import sys

import pytest
import torch

from lft_helpers import runtime


def pretend_gpu(monkeypatch, capability: tuple[int, int]) -> None:
    """A CUDA GPU of `capability` that, like torch's real check, reports emulated bf16 as
    supported unless `including_emulation=False` is asked."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: including_emulation or capability >= (8, 0),
    )


@pytest.mark.parametrize(
    ("gpu", "capability", "expected"),
    [
        ("T4", (7, 5), "fp16"),
        ("V100", (7, 0), "fp16"),
        ("A100", (8, 0), "bf16"),
        ("RTX 3090", (8, 6), "bf16"),
        ("H100", (9, 0), "bf16"),
    ],
)
def test_auto_precision_is_bf16_only_where_the_gpu_has_it(monkeypatch, gpu, capability, expected):
    pretend_gpu(monkeypatch, capability)
    assert runtime.resolve_precision("auto") == expected, gpu


def test_an_explicit_precision_is_kept_on_any_gpu(monkeypatch):
    pretend_gpu(monkeypatch, (7, 5))
    assert runtime.resolve_precision("bf16") == "bf16"
    assert runtime.resolve_precision("fp32") == "fp32"


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_cpu_uses_bf16_only_with_native_support(monkeypatch, native, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: native)
    assert runtime.resolve_precision("auto") == expected


CPUINFO = (
    "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t\t: fpu avx2 avx512_bf16\n\n"
    "processor\t: 1\nmodel name\t: Another CPU\nflags\t\t: fpu\n"
)


@pytest.fixture
def pretend_cpuinfo(monkeypatch):
    """Make /proc/cpuinfo read as `text`; the cached flags are read afresh before and after."""

    def pretend(text: str) -> None:
        monkeypatch.setattr(runtime, "_cpuinfo", lambda: text)
        runtime.cpu_flags.cache_clear()

    yield pretend
    runtime.cpu_flags.cache_clear()


def test_cpu_name_and_flags_come_from_the_first_processor(pretend_cpuinfo):
    pretend_cpuinfo(CPUINFO)
    assert runtime.cpu_name() == "Example CPU @ 2.0GHz"
    assert runtime.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}
    assert runtime.cpu_supports_bf16()


def test_a_flag_must_match_whole_and_no_cpuinfo_means_no_flags(pretend_cpuinfo):
    # Flags that only begin like the bf16 ones: the old substring test took them for bf16.
    pretend_cpuinfo("flags\t: avx512_bf16x amx_bf16_old\n")
    assert runtime.cpu_flags() == {"avx512_bf16x", "amx_bf16_old"}
    assert not runtime.cpu_supports_bf16()
    pretend_cpuinfo("")  # not Linux: no /proc/cpuinfo
    assert runtime.cpu_flags() == frozenset() and not runtime.cpu_supports_bf16()
    assert runtime.cpu_name()  # falls back to the platform's answer


def test_freed_memory_once_kept_stays_kept_and_says_so():
    """mallopt cannot be undone, so a later request for the default allocator must not be
    recorded as having it; checked in a fresh process, whose allocator no test has touched."""
    script = (
        "from lft_helpers.runtime import configure_allocator as c; "
        "print(c(False), c(True), c(False))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "True", "True"]
