"""How much data LoRA needs: LoRA and full fine-tuning trained on growing slices of IMDb's train
split for the same number of epochs, each scored on the same eval reviews.

Fixed epochs, not a fixed step budget: each size sees its reviews the same number of times, so
a point's training time is what that much data costs, and the curve against time is the "time
to accuracy" curve. Small sizes get few optimizer steps; that is part of what is measured.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from .config import PRESETS, Config
from .errors import LFTError
from .experiment import end_overwrite, kept_results, mark_overwrite, run_experiment, stale
from .pipeline import prepare_data, score_model
from .reporting import (
    compare_runs,
    evidence,
    format_interval,
    hardware_phrase,
    load_results,
    relation,
    suite_provenance,
    to_markdown,
    write_json_atomic,
)
from .shipping import load_saved_model
from .specs import VARIANT_SPECS

SCALING_SIZES = (500, 1000, 2000, 5000, 10000, 24000)
SCALING_VARIANTS = ("lora", "full")
SUMMARY = "summary.json"
FULL_TEST = "full_test.json"
# Every test review that does not repeat a train review, balanced: the full preset's eval set.
ALL_TEST_REVIEWS = PRESETS["full"]["eval_size"]
# The sizes change; everything else is held. cpu: short reviews and one epoch, so the whole
# curve (12 trainings, about 85,000 training reviews) fits about an hour on 2 cores. The
# largest size is scored once more on all the test reviews (`full_test_reviews`, 0: not).
SCALING_BUDGETS = {
    "smoke": dict(sizes=(16, 32), full_test_reviews=0),
    "cpu": dict(
        sizes=SCALING_SIZES,
        val_size=200,
        eval_size=2000,
        max_length=128,
        epochs=1.0,
        full_test_reviews=ALL_TEST_REVIEWS,
    ),
    "full": dict(sizes=SCALING_SIZES, epochs=1.0, full_test_reviews=ALL_TEST_REVIEWS),
}
HELD_FIELDS = ("val_size", "eval_size", "max_length", "epochs")


def budget_of(config: Config) -> dict:
    return dict(SCALING_BUDGETS.get(config.preset, SCALING_BUDGETS["cpu"]))


def scaling_plan(config: Config, sizes=None, **overrides) -> tuple[tuple[int, ...], Config]:
    """The sizes and the config every size shares: the preset's scaling budget, with
    `overrides` (None = not given) and `sizes` winning; results go to `<output_dir>/scaling`."""
    budget = budget_of(config)
    default_sizes = budget.pop("sizes")
    budget.pop("full_test_reviews")
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
    full_test_reviews: int | None = None,
    command: str | None = None,
    **overrides,
) -> dict:
    """Train and score `variants` at each training size; one results.json per size in
    `<output_dir>/scaling/n<size>`, then `summary.json` over them all. The largest size's
    saved models are scored once more on `full_test_reviews` test reviews (None: the
    budget's; 0: not), into its `full_test.json`. `command` is recorded as what ran it.

    With `resume`, a size whose results.json is complete is kept and skipped, and an
    interrupted one continues from its checkpoints.
    """
    chosen, shared = scaling_plan(config, sizes, **overrides)
    if full_test_reviews is None:
        full_test_reviews = budget_of(config)["full_test_reviews"]
    specs = [VARIANT_SPECS[name] for name in variants]
    results, kept_sizes = {}, set()
    began = mark_overwrite(shared.output_dir, overwrite=overwrite, resume=resume)
    for size in chosen:
        run_config = shared.replace(train_size=size, output_dir=str(size_dir(shared, size)))
        fresh = resume and stale(run_config.output_dir, began)  # the older run's: replace it
        kept = None if fresh else kept_results(run_config, resume=resume)
        if kept is not None:
            log(f"{size:,} training reviews: done before, kept ({run_config.output_dir})")
            results[size], kept_sizes = kept, kept_sizes | {size}
            continue
        log(f"{size:,} training reviews:")
        results[size] = run_experiment(
            run_config, specs, log=log, resume=resume and not fresh, overwrite=overwrite or fresh
        )
    full_test = None
    if full_test_reviews:
        largest = max(chosen)
        run_config = shared.replace(train_size=largest, output_dir=str(size_dir(shared, largest)))
        full_test = score_full_test(
            run_config,
            variants,
            full_test_reviews,
            keep=largest in kept_sizes,
            log=log,
        )
    summary = summarize_scaling(results, shared, variants, full_test=full_test)
    summary.update(command=command, resumed=resume)
    write_json_atomic(summary, Path(shared.output_dir) / SUMMARY)
    end_overwrite(shared.output_dir)
    return summary


def score_full_test(
    run_config: Config, variants, reviews: int, *, keep: bool = False, log=print
) -> dict:
    """One finished size's saved models scored on `reviews` test reviews (the same for every
    variant; none that repeats a train review), with the paired LoRA/full test; written to
    the size's `full_test.json`. With `keep`, a file scored on as many reviews is kept."""
    path = Path(run_config.output_dir) / FULL_TEST
    if keep and path.is_file():
        before = load_results(path)
        if before.get("eval_size") == reviews:
            log(f"{run_config.train_size:,} training reviews on {reviews:,} test reviews: kept")
            return before
    config = run_config.replace(eval_size=reviews)
    log(f"{run_config.train_size:,} training reviews, scored on {reviews:,} test reviews:")
    prepared = prepare_data(config)
    runs = {}
    for name in variants:
        spec = VARIANT_SPECS[name]
        model, _ = load_saved_model(Path(run_config.output_dir) / spec.save_dir, spec)
        runs[name] = score_model(model, prepared, config)
        log(f"  {spec.label}: accuracy {runs[name]['accuracy']:.4f}")
    record = {
        "train_size": run_config.train_size,
        "eval_size": reviews,
        "eval_indices": [int(i) for i in prepared.subsets.eval_indices],
        "runs": runs,
        "comparison": compare_runs(runs["lora"], runs["full"])
        if {"lora", "full"} <= set(runs)
        else None,
    }
    write_json_atomic(record, path)
    return record


def summarize_scaling(results: dict, shared: Config, variants, *, full_test=None) -> dict:
    """One point per (variant, size), the LoRA/full comparison at each size, and the shared
    setup; enough to redraw the figure and redo any point. With `full_test`, the largest
    size's scores on all the test reviews too."""
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
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "complete": True,
        "model_label": last["model_label"],
        "data_label": last["data_label"],
        "budget": {name: getattr(shared, name) for name in HELD_FIELDS},
        "step_rule": "fixed epochs: each size is trained for the same number of epochs",
        "variants": list(variants),
        "environment": last["environment"],
        "points": points,
        "comparisons": comparisons,
        "finding": scaling_finding(comparisons),
        "full_test": full_test
        and {
            "train_size": full_test["train_size"],
            "eval_size": full_test["eval_size"],
            "accuracy": {k: r["accuracy"] for k, r in full_test["runs"].items()},
            "accuracy_ci": {k: r["accuracy_ci"] for k, r in full_test["runs"].items()},
            "comparison": full_test["comparison"],
        },
    }


def full_test_finding(summary: dict) -> str | None:
    """The largest size on all the test reviews, in one sentence; None when not scored."""
    full = summary.get("full_test")
    if not full:
        return None
    scores = "; ".join(
        f"{VARIANT_SPECS[name].label} {acc:.4f} ({format_interval(full['accuracy_ci'][name])})"
        for name, acc in full["accuracy"].items()
    )
    sentence = (
        f"Trained on {full['train_size']:,} reviews and scored on all {full['eval_size']:,} "
        f"test reviews: {scores}"
    )
    if full.get("comparison"):
        sentence += f". {relation(full['comparison'], 'LoRA', 'full fine-tuning')}"
    return sentence + "."


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


def scaling_formats(table) -> dict:
    """Accuracies to four decimals and minutes to one, whatever the variants' column names."""
    formats = {c: "{:.4f}" for c in table.columns if c.endswith(" accuracy")}
    return formats | {c: "{:.1f}" for c in table.columns if c.endswith(" train min")}


def scaling_markdown(summary: dict, source) -> str:
    """The notebook's view of a scaling run made elsewhere: where it comes from, the table,
    and the findings."""
    parts = [
        suite_provenance(summary, source, command="python -m lft_helpers scaling"),
        f"Held at every size: {scaling_note(summary)}.",
        to_markdown(table := scaling_table(summary), scaling_formats(table)),
        summary["finding"],
    ]
    full = full_test_finding(summary)
    return "\n\n".join(parts + ([full] if full else []))
