"""How much LoRA rank is enough: r from 1 to 32 on the attention query/value projections, and
r = 8 on every linear layer of the encoder, each trained and scored on the same data.

`lora_alpha` follows the rank (alpha = 2r), so the adapter's update keeps the same scale
(alpha / r = 2) at every rank and the sweep compares capacity, not step size.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .errors import LFTError
from .modeling import all_linear_targets, default_target_modules, load_model, model_label
from .pipeline import fit_variant, prepare_data, run_labels
from .reporting import _interval, build_results, write_json_atomic

SWEEP_RANKS = (1, 2, 4, 8, 16, 32)
ALL_LINEAR_RANK = 8
ALPHA_PER_RANK = 2
ALPHA_RULE = f"lora_alpha = {ALPHA_PER_RANK} * r"
BUDGET_FIELDS = ("train_size", "val_size", "eval_size", "max_length", "epochs")
# Seven trainings instead of one: each preset's sweep takes a smaller slice of the data.
SWEEP_BUDGETS = {
    "smoke": {},
    "cpu": dict(train_size=1000, val_size=200, eval_size=1000, max_length=128, epochs=1.0),
    "full": dict(train_size=5000, val_size=500, eval_size=5000, max_length=256, epochs=1.0),
}


def budget_of(config: Config) -> dict:
    return {name: getattr(config, name) for name in BUDGET_FIELDS}


def sweep_config(config: Config, **overrides) -> Config:
    """The main run's config cut down to the sweep budget, writing to `<output_dir>/sweep`.

    The budget never exceeds the main run's; `overrides` (None = not given) win over both. The
    main run's budget is kept in `extra["main_budget"]` so figures can say what was reduced.
    """
    budget = {
        name: min(value, getattr(config, name))
        for name, value in SWEEP_BUDGETS.get(config.preset, {}).items()
    }
    budget.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(budget) - set(BUDGET_FIELDS))
    if unknown:
        raise LFTError(f"Sweep budget field(s) {unknown} unknown: use {', '.join(BUDGET_FIELDS)}.")
    return config.replace(
        **budget,
        output_dir=str(Path(config.output_dir) / "sweep"),
        extra={**config.extra, "main_budget": budget_of(config)},
    )


def sweep_plan(config: Config, ranks=SWEEP_RANKS, all_linear: bool = True) -> dict:
    """Run name -> (rank, target module names): q/v at each rank, then r=8 on all linear layers."""
    model = load_model(config)
    attention = list(config.target_modules or default_target_modules(model))
    plan = {f"r={r}": (r, attention) for r in ranks}
    if all_linear:
        plan[f"r={ALL_LINEAR_RANK} all-linear"] = (ALL_LINEAR_RANK, all_linear_targets(model))
    return plan


def check_prepared(prepared, config: Config) -> None:
    """Data prepared for another budget would be mislabelled in the results; refuse it."""
    sizes = {"train_size": len(prepared.train), "eval_size": len(prepared.eval)}
    wrong = {k: v for k, v in sizes.items() if v != getattr(config, k)}
    if wrong:
        wanted = {k: getattr(config, k) for k in wrong}
        raise LFTError(
            f"The prepared data has {wrong} but the sweep config says {wanted}: pass "
            "prepared=None, or data prepared with this config (prepare_data(sweep_config(...)))."
        )


def run_slug(name: str) -> str:
    """A folder name for a run: 'r=8 all-linear' -> 'r8-all-linear'."""
    return name.replace("=", "").replace(" ", "-")


def adapter_parameters(model) -> int:
    """LoRA weights alone: the trainable count also holds the head, which no rank changes."""
    return sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)


def sweep_info(config: Config, plan: dict) -> dict:
    return {
        "ranks": [r for name, (r, _) in plan.items() if "all-linear" not in name],
        "alpha_rule": ALPHA_RULE,
        "targets": {name: targets for name, (_, targets) in plan.items()},
        "budget": budget_of(config),
        "main_budget": config.extra.get("main_budget"),
    }


def fit_sweep_run(config: Config, prepared, name, r, targets, log=print, resume=False) -> dict:
    """Train, score and save LoRA at rank `r` (alpha = 2r) on `targets`, in its own folder."""
    run_config = config.replace(
        lora_r=r,
        lora_alpha=ALPHA_PER_RANK * r,
        target_modules=tuple(targets),
        output_dir=str(Path(config.output_dir) / run_slug(name)),
    )
    model, record = fit_variant("lora", prepared, run_config, log=log, resume=resume)
    return {
        "r": r,
        "lora_alpha": run_config.lora_alpha,
        "targets": list(targets),
        "adapter_params": adapter_parameters(model),
        **record,
    }


def run_sweep(
    config: Config,
    prepared=None,
    ranks=SWEEP_RANKS,
    log=print,
    all_linear: bool = True,
    results_path: str | Path | None = None,
    resume: bool = False,
) -> dict:
    """Train and score LoRA at each rank (and all-linear); a results document keyed by run.

    Pass `sweep_config(config)` for the reduced budget. Each run's adapter is saved under
    `<output_dir>/<run>/adapter`; with `results_path` the document is rewritten after each run.
    """
    plan = sweep_plan(config, ranks, all_linear)  # first: a bad model or target fails fast
    if prepared is None:
        log(f"Preparing {config.train_size} train / {config.eval_size} eval reviews")
        prepared = prepare_data(config)
    check_prepared(prepared, config)
    runs: dict = {}
    results = None
    for name, (r, targets) in plan.items():
        log(f"LoRA {name} on {', '.join(targets)} ({model_label(config.model)}):")
        runs[name] = record = fit_sweep_run(config, prepared, name, r, targets, log, resume)
        log(f"  accuracy {record['accuracy']:.4f} with {record['trainable_params']:,} trained")
        results = build_results(config, run_labels(config), runs, prepared.subsets.eval_indices)
        results["sweep"] = sweep_info(config, plan)
        if results_path is not None:
            write_json_atomic(results, results_path)
    return results


def sweep_table(results: dict):
    """One row per sweep run: rank, targets, parameters, accuracy with its interval, size."""
    import pandas as pd

    rows = []
    for name, run in results["runs"].items():
        rows.append(
            {
                "run": name,
                "r": run.get("r"),
                "lora_alpha": run.get("lora_alpha"),
                "targets": ",".join(run.get("targets") or []),
                "adapter params": run.get("adapter_params"),
                "trainable params": run.get("trainable_params"),
                "trainable %": run.get("trainable_pct"),
                "accuracy": run.get("accuracy"),
                "acc 95% CI": _interval(run.get("accuracy_ci")),
                "F1": run.get("f1"),
                "eval loss": run.get("eval_loss"),
                "train time (s)": run.get("train_runtime_s"),
                "saved size (MB)": run.get("saved_size_mb"),
            }
        )
    return pd.DataFrame(rows).set_index("run")
