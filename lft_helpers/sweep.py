"""How much LoRA rank is enough: r from 1 to 32 on the attention query/value projections, and
r = 8 on every linear layer of the encoder, each trained and scored on the same data.

`lora_alpha` follows the rank (alpha = 2r), so the adapter's update keeps the same scale
(alpha / r = 2) at every rank and the sweep compares capacity, not step size.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .errors import LFTError
from .experiment import run_seeded
from .reporting import format_interval
from .specs import ALPHA_RULE, SWEEP_RANKS, sweep_specs

BUDGET_FIELDS = ("train_size", "val_size", "eval_size", "max_length", "epochs")
# Seven trainings instead of one: the cpu and full presets' sweeps take a smaller slice of the
# data (smoke is small already). The figure and the notebook say which budget was used.
SWEEP_BUDGETS = {
    "smoke": {},
    "cpu": dict(train_size=1000, val_size=200, eval_size=1000, max_length=128, epochs=1.0),
    "full": dict(train_size=5000, val_size=500, eval_size=5000, max_length=256, epochs=1.0),
}


def budget_of(config: Config) -> dict:
    return {name: getattr(config, name) for name in BUDGET_FIELDS}


def sweep_config(config: Config, **overrides) -> Config:
    """The main run's config cut down to the sweep budget, writing to `<output_dir>/sweep`.

    The budget never exceeds the main run's; `overrides` (None = not given) win over both.
    """
    budget = {
        name: min(value, getattr(config, name))
        for name, value in SWEEP_BUDGETS.get(config.preset, {}).items()
    }
    budget.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(budget) - set(BUDGET_FIELDS))
    if unknown:
        raise LFTError(f"Sweep budget field(s) {unknown} unknown: use {', '.join(BUDGET_FIELDS)}.")
    return config.replace(**budget, output_dir=str(Path(config.output_dir) / "sweep"))


def check_prepared(prepared, config: Config) -> None:
    """Data prepared for another budget would be mislabelled in the results; refuse it."""
    sizes = {"train_size": len(prepared.train), "eval_size": len(prepared.eval)}
    wrong = {k: v for k, v in sizes.items() if v != getattr(config, k)}
    if wrong:
        wanted = {k: getattr(config, k) for k in wrong}
        raise LFTError(
            f"The prepared data has {wrong} but the sweep config says {wanted}: pass "
            "prepared=None, or data prepared with the sweep's budget."
        )


def run_sweep(
    config: Config,
    *,
    budget: dict | None = None,
    ranks=SWEEP_RANKS,
    all_linear: bool = True,
    prepared=None,
    log=print,
    resume: bool = False,
    overwrite: bool = False,
    seeds: int = 1,
    command: str | None = None,
) -> dict:
    """Train and score LoRA at each rank (and all-linear) on the sweep budget of `config`.

    `config` is the main run's; the sweep runs on `sweep_config(config, **budget)` into
    `<output_dir>/sweep`, each adapter in its own folder there, through the same runner as
    `run` and `compare`. Its results are returned; with `seeds` > 1 each further training
    seed's go to `<output_dir>/sweep/seeds/seed<k>` and the spread to `sweep/seeds.json`.
    `command`, the command line that ran it, is recorded in the results.
    """
    swept = sweep_config(config, **(budget or {}))
    if prepared is not None:
        check_prepared(prepared, swept)
    info = {
        "ranks": list(ranks),
        "alpha_rule": ALPHA_RULE,
        "budget": budget_of(swept),
        "main_budget": budget_of(config),
    }
    return run_seeded(
        swept,
        sweep_specs(ranks, all_linear=all_linear),
        seeds=seeds,
        log=log,
        resume=resume,
        overwrite=overwrite,
        prepared=prepared,
        extra={"sweep": info, **({"command": command} if command else {})},
    )[0]


def sweep_table(results: dict):
    """One row per sweep run, narrow enough for GitHub's width: the run's name says its rank
    and targets (lora_alpha is 2r throughout; the results file keeps both), then its size,
    accuracy with its interval, eval loss, time and saved size."""
    import pandas as pd

    rows = []
    for name, run in results["runs"].items():
        rows.append(
            {
                "run": name,
                "adapter params": run.get("adapter_params"),
                "trainable %": run.get("trainable_pct"),
                "accuracy": run.get("accuracy"),
                "acc 95% CI": format_interval(run.get("accuracy_ci")),
                "eval loss": run.get("eval_loss"),
                "train time (s)": run.get("train_runtime_s"),
                "saved size (MB)": run.get("saved_size_mb"),
            }
        )
    return pd.DataFrame(rows).set_index("run")
