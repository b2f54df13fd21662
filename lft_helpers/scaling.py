"""How much data LoRA needs: LoRA and full fine-tuning trained on growing slices of IMDb's train
split for the same number of epochs, each scored on the same eval reviews.

Fixed epochs, not a fixed step budget: each size sees its reviews the same number of times, so
a point's training time is what that much data costs, and the curve against time is the "time
to accuracy" curve. Small sizes get few optimizer steps; that is part of what is measured.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .errors import LFTError
from .experiment import kept_results, run_experiment
from .reporting import (
    compare_runs,
    evidence,
    format_interval,
    hardware_phrase,
    write_json_atomic,
)
from .specs import VARIANT_SPECS

SCALING_SIZES = (500, 1000, 2000, 5000, 10000, 24000)
SCALING_VARIANTS = ("lora", "full")
SUMMARY = "summary.json"
# The sizes change; everything else is held. cpu: short reviews and one epoch, so the whole
# curve (12 trainings, about 85,000 training reviews) fits about an hour on 2 cores.
SCALING_BUDGETS = {
    "smoke": dict(sizes=(16, 32)),
    "cpu": dict(sizes=SCALING_SIZES, val_size=200, eval_size=2000, max_length=128, epochs=1.0),
    "full": dict(sizes=SCALING_SIZES, epochs=1.0),
}
HELD_FIELDS = ("val_size", "eval_size", "max_length", "epochs")


def scaling_plan(config: Config, sizes=None, **overrides) -> tuple[tuple[int, ...], Config]:
    """The sizes and the config every size shares: the preset's scaling budget, with
    `overrides` (None = not given) and `sizes` winning; results go to `<output_dir>/scaling`."""
    budget = dict(SCALING_BUDGETS.get(config.preset, SCALING_BUDGETS["cpu"]))
    default_sizes = budget.pop("sizes")
    chosen = tuple(sizes or default_sizes)
    budget.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(budget) - set(HELD_FIELDS))
    if unknown:
        raise LFTError(f"Scaling budget field(s) {unknown} unknown: use {', '.join(HELD_FIELDS)}.")
    if not chosen or min(chosen) < 2:
        raise LFTError(f"Training sizes {chosen}: give whole numbers of at least 2.")
    shared = config.replace(**budget, output_dir=str(Path(config.output_dir) / "scaling"))
    return tuple(sorted(set(chosen))), shared


def size_dir(shared: Config, size: int) -> Path:
    return Path(shared.output_dir) / f"n{size}"


def run_scaling(
    config: Config,
    *,
    sizes=None,
    variants=SCALING_VARIANTS,
    log=print,
    resume: bool = False,
    overwrite: bool = False,
    **overrides,
) -> dict:
    """Train and score `variants` at each training size; one results.json per size in
    `<output_dir>/scaling/n<size>`, then `summary.json` over them all.

    With `resume`, a size whose results.json is complete is kept and skipped, and an
    interrupted one continues from its checkpoints.
    """
    chosen, shared = scaling_plan(config, sizes, **overrides)
    specs = [VARIANT_SPECS[name] for name in variants]
    results = {}
    for size in chosen:
        run_config = shared.replace(train_size=size, output_dir=str(size_dir(shared, size)))
        kept = kept_results(run_config, resume=resume)
        if kept is not None:
            log(f"{size:,} training reviews: done before, kept ({run_config.output_dir})")
            results[size] = kept
            continue
        log(f"{size:,} training reviews:")
        results[size] = run_experiment(
            run_config, specs, log=log, resume=resume, overwrite=overwrite
        )
    summary = summarize_scaling(results, shared, variants)
    write_json_atomic(summary, Path(shared.output_dir) / SUMMARY)
    return summary


def summarize_scaling(results: dict, shared: Config, variants) -> dict:
    """One point per (variant, size), the LoRA/full comparison at each size, and the shared
    setup; enough to redraw the figure and redo any point."""
    points, comparisons = [], []
    for size, result in sorted(results.items()):
        runs = result["runs"]
        for name in variants:
            run = runs[name]
            points.append(
                {
                    "variant": name,
                    "train_size": size,
                    "accuracy": run["accuracy"],
                    "accuracy_ci": run.get("accuracy_ci"),
                    "train_minutes": round(run["train_runtime_s"] / 60, 3),
                    "train_samples_per_second": run.get("train_samples_per_second"),
                    "trainable_params": run.get("trainable_params"),
                }
            )
        if {"lora", "full"} <= set(runs):
            comparisons.append({"train_size": size, **compare_runs(runs["lora"], runs["full"])})
    last = results[max(results)]
    return {
        "kind": "scaling",
        "model_label": last["model_label"],
        "data_label": last["data_label"],
        "budget": {name: getattr(shared, name) for name in HELD_FIELDS},
        "step_rule": "fixed epochs: each size is trained for the same number of epochs",
        "variants": list(variants),
        "environment": last["environment"],
        "points": points,
        "comparisons": comparisons,
        "finding": scaling_finding(comparisons),
    }


def scaling_note(summary: dict) -> str:
    """What every point shares, for the figure and the notebook: budget, model, hardware."""
    b = summary["budget"]
    epochs = f"{b['epochs']:g} epoch{'' if b['epochs'] == 1 else 's'}"
    return (
        f"{epochs} at every size, max length {b['max_length']}, {b['eval_size']:,} eval "
        f"reviews; {summary['model_label']}; {hardware_phrase(summary['environment'])}"
    )


def _sizes(sizes: list[int]) -> str:
    if len(sizes) == 1:
        return f"{sizes[0]:,}"
    return f"{sizes[0]:,} to {sizes[-1]:,}"


def scaling_finding(comparisons: list[dict]) -> str:
    """Where LoRA's and full fine-tuning's curves stand apart, meet or cross, in one sentence
    decided by the paired test at each size (ties said plainly)."""
    if not comparisons:
        return "LoRA and full fine-tuning were not both run: nothing to compare."

    def side(c: dict) -> str:
        if not c["differ"]:
            return "tie"
        return "LoRA ahead" if c["gap_points"] > 0 else "full fine-tuning ahead"

    stretches: list[tuple[str, list[int]]] = []
    for c in comparisons:
        state = side(c)
        if stretches and stretches[-1][0] == state:
            stretches[-1][1].append(c["train_size"])
        else:
            stretches.append((state, [c["train_size"]]))
    parts = [
        f"{'tie within the noise' if state == 'tie' else state} at {_sizes(sizes)} reviews"
        for state, sizes in stretches
    ]
    winners = {state for state, _ in stretches if state != "tie"}
    if len(winners) == 2:
        verdict = "The curves cross"
    elif winners and any(state == "tie" for state, _ in stretches):
        verdict = "The curves meet"
    elif winners:
        verdict = "The curves stay apart"
    else:
        verdict = "The curves never separate"
    return f"{verdict}: {'; '.join(parts)} (McNemar's paired test at each size, 5% level)."


def versus(comparison: dict) -> str:
    """LoRA minus full fine-tuning in a table cell: '-1.2 (p = 0.01)', or a tie said so."""
    gap = comparison["gap_points"]
    test = comparison.get("p_value")
    basis = f"p = {test:.2g}" if test is not None else evidence(comparison)
    verdict = "" if comparison["differ"] else ", a tie"
    return f"{gap:+.1f} ({basis}{verdict})"


def scaling_table(summary: dict):
    """One row per training size: each variant's accuracy (95% CI) and training minutes, and
    how LoRA stands against full fine-tuning there."""
    import pandas as pd

    rows: dict[int, dict] = {}
    for p in summary["points"]:
        row = rows.setdefault(p["train_size"], {"train reviews": p["train_size"]})
        name = "LoRA" if p["variant"] == "lora" else VARIANT_SPECS[p["variant"]].label
        row[f"{name} accuracy"] = p["accuracy"]
        row[f"{name} 95% CI"] = format_interval(p["accuracy_ci"])
        row[f"{name} train min"] = p["train_minutes"]
    for c in summary["comparisons"]:
        rows[c["train_size"]]["LoRA - full (points)"] = versus(c)
    return pd.DataFrame(list(rows.values())).set_index("train reviews")
