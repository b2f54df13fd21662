"""One benchmark run: every measurement per model, checked against the targets, as JSON and as
a plain-text table."""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import asdict

import numpy as np

from ..hub import display_name
from ..modeling import OFFLINE_ALIAS, load_tokenizer
from ..reporting import collect_environment, write_json_atomic
from ..runtime import configure_allocator, configure_threads, device_name, resolve_precision
from .eval_speed import measure_eval_steps
from .memory import measure_memory_pair
from .peak import combine_peaks, matrix_instruction_sets, measure_peaks
from .settings import BenchSettings, bench_config, check_settings, settings_from_args
from .subjects import RANDOM_DISTILBERT, select_reviews, spec_label
from .train_speed import measure_training_ladder

SCHEMA = "lft-bench/1"
# The targets; reported as checks, never asserted by a test (timings vary by machine).
TARGETS = {
    "eval_speedup": 3.0,
    "eval_fast_fraction_of_peak": 0.5,
    "train_speedup": 1.8,
    "lora_state_fraction": 0.02,
    "accuracy_gap_points": 0.5,
}
# Training targets depend on the model (MiniLM's small matmuls reach less of the peak than
# DistilBERT-base's) and on the CPU's matrix units: (MiniLM, DistilBERT-size).
GAIN_OVER_BEFORE = (2.0, 1.5)
TRAIN_FRACTION_OF_PEAK = {"amx": (0.15, 0.20), "avx512_bf16": (0.25, 0.35)}
EVAL_FRACTION_OF_PEAK_AMX = (0.35, 0.50)


def model_targets(model: str, instruction_sets) -> dict:
    """The targets for one benchmarked model on this machine (None: no target here)."""
    which = 0 if "minilm" in model.lower() else 1
    amx = "amx_bf16" in instruction_sets
    kind = "amx" if amx else "avx512_bf16" if "avx512_bf16" in instruction_sets else None
    targets = {**TARGETS, "train_gain_over_before": GAIN_OVER_BEFORE[which]}
    if amx:
        targets["eval_fast_fraction_of_peak"] = EVAL_FRACTION_OF_PEAK_AMX[which]
    targets["train_fast_fraction_of_peak"] = TRAIN_FRACTION_OF_PEAK[kind][which] if kind else None
    return targets


def describe_tokens(dataset, max_length: int) -> dict:
    lengths = np.array([len(ids) for ids in dataset["input_ids"]])
    return {
        "mean": round(float(lengths.mean()), 1),
        "median": float(np.median(lengths)),
        "max": int(lengths.max()),
        "truncated_share": round(float((lengths >= max_length).mean()), 4),
        "total": int(lengths.sum()),
    }


def bench_model(spec: str, settings: BenchSettings, log=print) -> dict:
    """Every measurement for one model on the same reviews."""
    config = bench_config(settings, spec)
    log(f"Model {spec_label(spec)}")
    tokenizer = load_tokenizer(config)
    dataset = select_reviews(config, settings.reviews, tokenizer)
    adapter = settings.adapter if spec != RANDOM_DISTILBERT else None
    report = {
        "model": spec_label(spec),
        "weights": "random" if spec == RANDOM_DISTILBERT else "loaded",
        "adapter": "trained (--adapter)" if adapter else "untrained LoRA",
        "reviews": len(dataset),
        "tokens": describe_tokens(dataset, config.max_length),
    }
    report["eval"] = measure_eval_steps(spec, config, dataset, tokenizer, settings, adapter, log)
    steps = {
        "steps": settings.train_steps,
        "warmup": settings.warmup_steps,
        "loss_check": settings.loss_check,
        "log": log,
    }
    lora, profile = measure_training_ladder(
        spec, config, dataset, tokenizer, variant="lora", profile=settings.profile, **steps
    )
    report["train"] = lora
    if settings.full_training:
        report["train"]["full"], _ = measure_training_ladder(
            spec, config, dataset, tokenizer, variant="full", profile=False, **steps
        )
    if profile:
        report["train_profile"] = profile["fast"]
        report["train_profile_before"] = profile["before"]
    if settings.memory:
        report["memory"] = measure_memory_pair(
            spec, config, dataset, threads=settings.threads, log=log
        )
    return report


def missed_targets(report: dict, instruction_sets=()) -> dict:
    """Each target with its measured value and whether it is met (None: not measured, or no
    target on this kind of machine)."""
    ev, tr, mem = report["eval"], report["train"], report.get("memory")
    targets = model_targets(report["model"], instruction_sets)
    measured = {
        "eval_speedup": (ev["speedup"], ">="),
        "eval_fast_fraction_of_peak": (ev["fast"]["fraction_of_peak"], ">="),
        "train_speedup": (tr["speedup"], ">="),
        "train_gain_over_before": (tr["gain_over_before"], ">="),
        "train_fast_fraction_of_peak": (tr["fast"].get("fraction_of_fast_peak"), ">="),
        "lora_state_fraction": (mem["state_fraction"] if mem else None, "<="),
        "accuracy_gap_points": (ev["accuracy_gap_points"], "<="),
    }
    checks = {}
    for name, (value, op) in measured.items():
        target = targets[name]
        if value is None or target is None:
            met = None
        else:
            met = value >= target if op == ">=" else value <= target
        checks[name] = {"value": value, "target": f"{op} {target}", "met": met}
    for name, part in (("lora", tr), ("full", tr.get("full"))):
        if part and "loss_check" in part:
            check = part["loss_check"]
            checks[f"{name}_loss_within_tolerance"] = {
                "value": max(check["differences"].values()),
                "target": f"<= {check['tolerance']}",
                "met": check["within"],
            }
    if mem:
        below = mem["lora"]["peak_mb"] < mem["full"]["peak_mb"]
        checks["lora_peak_below_full"] = {"value": mem["peak_ratio"], "target": "< 1", "met": below}
    return checks


def timed_entries(report: dict):
    """Every evaluation and training measurement that has GFLOP/s."""
    ev, tr = report["eval"], report["train"]
    yield from (ev["naive"], ev["fast"], *ev["steps"], *tr["steps"])
    if "full" in tr:
        yield from tr["full"]["steps"]


def add_peak_fractions(report: dict, peaks: dict, *, fast_precision: str) -> None:
    """Each measurement's GFLOP/s as a fraction of the matmul peak at its own precision, and
    (training) at the fast path's precision: the yardstick of what the machine could do. The
    fraction of the best single reading (`burst`) is kept beside it, for the record; each
    profiled part of a training step is set against the peak of the precision it ran in."""
    for entry in timed_entries(report):
        peak = peaks[entry["precision"]]
        entry["fraction_of_peak"] = round(entry["gflops_useful"] / peak["gflops"], 4)
        entry["executed_fraction_of_peak"] = round(entry["gflops_executed"] / peak["gflops"], 4)
        entry["fraction_of_burst"] = round(entry["gflops_useful"] / peak["best_burst"], 4)
        if "variant" in entry:
            best = peaks[fast_precision]["gflops"]
            entry["fraction_of_fast_peak"] = round(entry["gflops_useful"] / best, 4)
    for key in ("train_profile", "train_profile_before"):
        for part in report.get(key, {}).get("parts", []):
            if part["gflops"]:
                own = peaks[part["precision"]]["gflops"]
                part["fraction_of_own_peak"] = round(part["gflops"] / own, 4)


def run_bench(settings: BenchSettings, log=print) -> dict:
    """The whole benchmark as one JSON-ready report."""
    check_settings(settings)
    threads = configure_threads(settings.threads or None)
    kept = configure_allocator(settings.keep_freed_memory)
    fast_precision = resolve_precision(settings.precision)
    log(f"Matmul peak ({device_name()}, {threads} threads): fp32 and {fast_precision}")
    # Read before and after each model: on a shared machine the rate moves during a run, and
    # the median of readings across it is the yardstick the timed work ran against.
    readings = [measure_peaks(["fp32", fast_precision])]
    load_before = os.getloadavg()
    models = {}
    for spec in settings.models:
        models[spec_label(spec)] = bench_model(spec, settings, log)
        readings.append(measure_peaks(readings[0]))
    peaks = combine_peaks(readings)
    for report in models.values():
        add_peak_fractions(report, peaks, fast_precision=fast_precision)
        report["checks"] = missed_targets(report, matrix_instruction_sets())
    config = bench_config(settings, OFFLINE_ALIAS)
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            **asdict(settings),
            "models": [spec_label(s) for s in settings.models],
            "data": display_name(config.data),  # labels, never this machine's paths
            "adapter": display_name(settings.adapter) if settings.adapter else None,
        },
        "fast_precision": fast_precision,
        "freed_memory_kept": kept,
        "environment": collect_environment(),
        "matrix_instruction_sets": matrix_instruction_sets(),
        # Other work on a shared machine slows the runs; the load average says how much.
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "matmul_peak": peaks,
        "models": models,
    }


# --- text -------------------------------------------------------------------------------------


def _fmt(value, spec: str = "{:.2f}") -> str:
    return "-" if value is None else spec.format(value)


def _row(label: str, a, b, spec: str = "{:.2f}", ratio: str | None = "b/a") -> str:
    r = None
    if ratio and a and b:
        r = b / a if ratio == "b/a" else a / b
    return f"  {label:34}{_fmt(a, spec):>12}{_fmt(b, spec):>12}{_fmt(r, '{:.3g}x'):>12}"


def _state_mb(entry: dict) -> float:
    return (entry["grad_bytes"] + entry["optimizer_bytes"]) / 1e6


def _percent(entry: dict, key: str):
    return None if key not in entry else 100 * entry[key]


def format_training(tr: dict, fast_precision: str) -> list[str]:
    """Samples/s and share of the fast precision's peak: LoRA, then full fine-tuning."""
    lines = []
    for name, pair in (("train", tr), ("full FT train", tr.get("full"))):
        if pair is None:
            continue
        naive, fast = pair["naive"], pair["fast"]
        lines += [
            _row(f"{name} samples/s", naive["samples_per_s"], fast["samples_per_s"]),
            _row(
                f"{name} % of {fast_precision} peak",
                _percent(naive, "fraction_of_fast_peak"),
                _percent(fast, "fraction_of_fast_peak"),
                "{:.1f}",
            ),
        ]
    return lines


def format_training_steps(tr: dict) -> list[str]:
    """The training ladders: samples/s, gain over the step before, % of the fast precision's
    peak, and the held-out loss's difference from the fp32 reference."""
    lines = []
    for name, part in (("LoRA", tr), ("full FT", tr.get("full"))):
        if part is None:
            continue
        check = part.get("loss_check", {})
        differences = check.get("differences", {})
        lines.append(
            f"  {'train ' + name + ', step by step':50}{'samples/s':>10}{'gain':>8}"
            f"{'% peak':>8}{'Δloss':>9}"
        )
        previous = None
        for step in part["steps"]:
            gain = step["samples_per_s"] / previous if previous else None
            delta = differences.get(step["step"])
            lines.append(
                f"    {step['description'][:48]:48}{step['samples_per_s']:>10.2f}"
                f"{_fmt(gain, '{:.2f}x'):>8}"
                f"{_fmt(_percent(step, 'fraction_of_fast_peak'), '{:.1f}'):>8}"
                f"{_fmt(delta, '{:+.4f}'):>9}"
            )
            previous = step["samples_per_s"]
        lines.append(
            f"    default vs before: {part['gain_over_before']:.2f}x"
            + (
                f"; Δloss vs fp32 reference ({check['reference_loss']:.4f}, from "
                f"{check['loss_before_training']:.4f} untrained) at most +{check['tolerance']:.3f}"
                + (
                    f" (fp32's own seed-to-seed spread {check['reference_seed_spread']:.3f}, "
                    f"floor {check['tolerance_floor']})"
                    if check.get("reference_seed_spread") is not None
                    else ""
                )
                + ": "
                f"{'yes' if check['within'] else 'NO'}"
                if check
                else ""
            )
        )
    return lines


def format_profile(profile: dict) -> list[str]:
    lines = [
        f"  where one training step's time goes ({profile['step']}; {profile['seconds']:.2f} s "
        "profiled)",
        f"    {'operator':56}{'self CPU ms':>12}{'share':>8}",
    ]
    for op in profile["operators"]:
        lines.append(f"    {op['op'][:56]:56}{op['self_cpu_ms']:>12.1f}{100 * op['share']:>7.1f}%")
    if profile.get("parts"):
        lines.append(
            f"    {'products, by part':36}{'GFLOP':>8}{'ms':>9}{'GFLOP/s':>9}"
            f"{'ran in':>8}{'% of its peak':>15}"
        )
    for part in profile.get("parts", []):
        lines.append(
            f"    {part['part']:36}{part['gflop']:>8.1f}{part['self_cpu_ms']:>9.1f}"
            f"{_fmt(part['gflops'], '{:.0f}'):>9}{part['precision']:>8}"
            f"{_fmt(_percent(part, 'fraction_of_own_peak'), '{:.1f}'):>15}"
        )
    return lines


def format_steps(ev: dict) -> list[str]:
    """The evaluation ladder: samples/s, gain over the step before, and share of the peak."""
    lines = [f"  {'eval, step by step':58}{'samples/s':>10}{'gain':>8}{'% peak':>8}"]
    previous = None
    for step in ev["steps"]:
        gain = step["samples_per_s"] / previous if previous else None
        lines.append(
            f"    {step['step']:56}{step['samples_per_s']:>10.1f}{_fmt(gain, '{:.2f}x'):>8}"
            f"{_fmt(_percent(step, 'fraction_of_peak'), '{:.1f}'):>8}"
        )
        previous = step["samples_per_s"]
    info = ev["inference"]
    if info.get("compiled"):
        lines.append(f"    (one-off compile: {info['compile_s']:.1f} s, not in the samples/s)")
    elif "compile_error" in info:
        lines.append(f"    (not compiled: {info['compile_error']})")
    return lines


def format_model(name: str, m: dict, fast_precision: str = "bf16") -> list[str]:
    ev, tr = m["eval"], m["train"]
    lines = [
        f"{name} ({m['weights']} weights, {m['adapter']} adapter; {m['reviews']} reviews, "
        f"mean {m['tokens']['mean']:.0f} tokens)",
        f"  {'':34}{'naive':>12}{'fast':>12}{'fast/naive':>12}",
        _row("eval samples/s", ev["naive"]["samples_per_s"], ev["fast"]["samples_per_s"], "{:.1f}"),
        _row(
            "eval % of matmul peak (real tok.)",
            _percent(ev["naive"], "fraction_of_peak"),
            _percent(ev["fast"], "fraction_of_peak"),
            "{:.1f}",
        ),
        _row("accuracy", ev["naive"]["accuracy"], ev["fast"]["accuracy"], "{:.4f}", None),
        *format_training(tr, fast_precision),
        f"  prediction agreement {ev['prediction_agreement']:.4f}; {ev['accuracy_note']}",
        *format_steps(ev),
        *format_training_steps(tr),
    ]
    if "memory" in m:
        lora, full = m["memory"]["lora"], m["memory"]["full"]
        lines += [
            f"  {'':34}{'LoRA':>12}{'full':>12}{'LoRA/full':>12}",
            _row("peak memory (MB)", lora["peak_mb"], full["peak_mb"], "{:.0f}", "a/b"),
            _row("grads + optimizer (MB)", _state_mb(lora), _state_mb(full), "{:.2f}", "a/b"),
        ]
    if "train_profile_before" in m:
        lines += format_profile(m["train_profile_before"])
    if "train_profile" in m:
        lines += format_profile(m["train_profile"])
    failed = [k for k, c in m.get("checks", {}).items() if c["met"] is False]
    lines.append(f"  targets missed: {', '.join(failed) if failed else 'none'}")
    return lines


def describe_peak(peak: dict) -> str:
    """One precision's yardstick and the readings it came from."""
    text = f"{peak['precision']} {peak['gflops']:,.0f} GFLOP/s"
    if "best_burst" in peak:
        readings = ", ".join(f"{r:,.0f}" for r in peak["readings"])
        text += f" (median of {readings}; best single product {peak['best_burst']:,.0f})"
    return text


def format_report(report: dict) -> str:
    """The benchmark as a plain-text table."""
    peaks = "; ".join(describe_peak(v) for v in report["matmul_peak"].values())
    env = report["environment"]
    isa = ", ".join(report.get("matrix_instruction_sets", [])) or "unknown"
    lines = [
        f"Benchmark on {env['gpu'] or env['cpu']} ({env['torch_threads']} threads; {isa}); "
        f"fast path precision {report['fast_precision']}",
        f"Matmul peak: {peaks}; load average before {report['load_average']['before'][0]:.2f}",
        "",
    ]
    for name, m in report["models"].items():
        lines += [*format_model(name, m, report["fast_precision"]), ""]
    return "\n".join(lines)


def cmd_bench(args) -> int:
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {message}", flush=True)

    report = run_bench(settings_from_args(args), log=log)
    print()
    print(format_report(report))
    path = write_json_atomic(report, args.output or f"results/bench-{device_name()}.json")
    print(f"Benchmark written to {path}")
    return 0
