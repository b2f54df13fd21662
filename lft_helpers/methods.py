"""Which way to fine-tune? A multi-seed suite of PEFT methods on the same data, eval reviews and
budget, in the manner of PEFT's `method_comparison/` (one runner, one file per run).

Every method is data: a `Spec` plus the small grid its learning rate is picked from (the
embeddings probe: its regularisation C). For each method the suite

1. runs every grid value with seed 0 and picks the best on the validation split (accuracy,
   then loss), never on the eval reviews (each grid run is scored on them too, so that the
   chosen one serves as seed 0, but the choice reads only the validation scores);
2. runs the chosen value with seeds 0..n-1 (seed 0 is the chosen grid run itself). The data
   subsets come from the config's own seed, so every run sees the same training, validation
   and eval reviews; the run seed changes only the head's initialisation, the adapter's and
   the batch order.

Files, under the suite's output directory:

- `runs/<method>/grid/<knob>=<value>.json` and `runs/<method>/seed<k>.json`: one run each,
  with `run_info` (spec, resolved config, PEFT config), `train_info` (metrics, time, memory,
  sizes, accuracy with its interval, per-review probabilities) and `meta_info` (versions,
  hardware, git commit);
- `runs/<method>/grid.json`: the grid, each value's validation scores, and the choice;
- `summary.json`: one row per method (mean and sd over seeds, the pooled interval, costs),
  the ranking, and what produced them; `report.md`: the table and the ranking as markdown.

A finished run is kept and skipped by --resume, so an interrupted suite continues where it
stopped. A run that fails writes its file with the error, so its method keeps a row that says
why; --resume tries it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .config import PRESETS, Config
from .errors import LFTError, first_line
from .evaluation import accuracy_interval
from .experiment import DEFAULT_SEEDS, check_seeds, fit_spec, save_trained
from .hub import is_local, readable_path
from .modeling import check_model, describe_model
from .pipeline import changed_settings, prepare_data, run_labels, score_model
from .reporting import (
    collect_environment,
    methods_markdown,
    rank_methods,
    write_json_atomic,
)
from .runtime import is_main_process, release_free_memory
from .specs import ALL_LINEAR, Spec, run_slug
from .sweep import BUDGET_FIELDS

SCHEMA_VERSION = 1
SUMMARY, REPORT, RUNS = "summary.json", "report.md", "runs"
DEFAULT_OUTPUT_DIR = "runs/methods"
SELECTED_BY = "highest validation accuracy; ties: lower validation loss, then the smaller value"
# Fields that decide which reviews a run sees: the data is prepared once for all methods, so
# a method may not change them.
DATA_FIELDS = (
    "model",
    "data",
    "seed",
    "train_size",
    "val_size",
    "eval_size",
    "max_length",
    "truncation",
    "head_tokens",
    "text_column",
    "label_column",
    "keep_eval_duplicates",
)

# Budgets. Explicit flags win over a budget's values; `config` keeps the config's sizes.
#
# cpu: 1,200 train / 200 validation / 1,000 eval reviews, 128 tokens, 1 epoch. The estimate,
# from the committed MiniLM runs on this 2-core CPU (LoRA q/v trains ~32 reviews/s at max
# length 128, all-linear LoRA ~20/s, the head alone ~2x LoRA; scoring ~140 reviews/s): 14
# trained methods (prefix tuning fails at once on these architectures) x 5 trainings (3 grid
# values, then 2 more seeds: seed 0 is the chosen grid run) = 70 trainings of 1,200 reviews at
# a mean ~28 reviews/s = ~50 min; scoring validation and eval reviews after each run (1,200 at
# ~140/s) ~10 min; loading, saving and the probe's embeddings ~5 min: about 65 minutes, with
# headroom under the 90 for a shared CPU. --train-size 1500 gives ~78 minutes.
CPU_BUDGET_MINUTES = 65  # the estimate above, for `methods --help`
SUITE_BUDGETS = {
    "smoke": dict(PRESETS["smoke"]),
    "cpu": dict(train_size=1200, val_size=200, eval_size=1000, max_length=128, epochs=1.0),
    "config": {},
}
DEFAULT_BUDGET = "cpu"

VIRTUAL_TOKENS = 20  # prompt, P- and prefix tuning
# LoRA at r = 8 on the attention query and value, alpha = 2r, whatever --target-modules says.
QV = {"lora_r": 8, "lora_alpha": 16, "target_modules": None}
ALL = {"lora_r": 8, "lora_alpha": 16, "target_modules": (ALL_LINEAR,)}
# Learning-rate grids, a factor ~3 apart around each family's usual rate (PEFT's and the
# methods' papers): ~1e-3 for LoRA, ~1e-2 for IA3, VeRA and virtual tokens, ~5e-5 for full
# fine-tuning. rsLoRA and PiSSA take larger effective steps at the same rate (scaling
# alpha/sqrt(r); principal components), LoRA+ multiplies B's rate by 16: their grids sit lower.
LORA_GRID = (1e-3, 3e-3, 1e-2)
LOWER_GRID = (3e-4, 1e-3, 3e-3)
LORAPLUS_GRID = (1e-4, 3e-4, 1e-3)
HIGH_GRID = (3e-3, 1e-2, 3e-2)
FULL_GRID = (2e-5, 5e-5, 1e-4)
C_GRID = (0.1, 1.0, 10.0)


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of the suite: a spec and the grid its learning rate (or C) is picked from."""

    spec: Spec
    grid: tuple[float, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def knob(self) -> str:
        """What the grid sets: the probe's C, else the learning rate."""
        return "C" if self.spec.train == "embeddings" else "learning_rate"

    def at(self, value: float) -> Spec:
        """The spec with its knob set to `value` (full fine-tuning reads its own rate)."""
        if self.knob == "C":
            return dataclasses.replace(self.spec, probe={**self.spec.probe, "C": value})
        rates = {"learning_rate": value, "full_learning_rate": value}
        return dataclasses.replace(self.spec, overrides={**self.spec.overrides, **rates})


def peft_spec(name: str, label: str, peft: dict, overrides=None, **hooks) -> Spec:
    return Spec(name, "peft", label, overrides=overrides or {}, peft=peft, **hooks)


def prompt_fields(peft_type: str, **fields) -> dict:
    return {"peft_type": peft_type, "num_virtual_tokens": VIRTUAL_TOKENS, **fields}


CATALOGUE = (
    Method(Spec("logreg-embeddings", "embeddings", "Logistic regression on embeddings"), C_GRID),
    Method(Spec("head", "head", "Head only"), HIGH_GRID),
    Method(Spec("bitfit", "head", "BitFit (biases + head)", trainable=("bias",)), LORA_GRID),
    Method(peft_spec("lora-qv", "LoRA r=8 q/v", {"peft_type": "LORA"}, QV), LORA_GRID),
    Method(peft_spec("lora-all", "LoRA r=8 all-linear", {"peft_type": "LORA"}, ALL), LORA_GRID),
    Method(peft_spec("rslora", "rsLoRA r=8 q/v", {"use_rslora": True}, QV), LOWER_GRID),
    Method(peft_spec("dora", "DoRA r=8 q/v", {"use_dora": True}, QV), LORA_GRID),
    Method(peft_spec("pissa", "PiSSA r=8 q/v", {"init_lora_weights": "pissa"}, QV), LOWER_GRID),
    Method(
        peft_spec(
            "loraplus",
            "LoRA+ r=8 q/v",
            {"peft_type": "LORA"},
            QV,
            optimizer={"name": "loraplus", "loraplus_lr_ratio": 16.0},
        ),
        LORAPLUS_GRID,
    ),
    Method(peft_spec("vera", "VeRA q/v", {"peft_type": "VERA"}, QV), HIGH_GRID),
    Method(peft_spec("ia3", "IA3", {"peft_type": "IA3"}), HIGH_GRID),
    Method(
        peft_spec("adalora", "AdaLoRA q/v", {"peft_type": "ADALORA"}, QV, callbacks=("adalora",)),
        LORA_GRID,
    ),
    Method(peft_spec("prompt", "Prompt tuning", prompt_fields("PROMPT_TUNING")), HIGH_GRID),
    Method(
        peft_spec("ptuning", "P-tuning", prompt_fields("P_TUNING", encoder_hidden_size=128)),
        HIGH_GRID,
    ),
    Method(peft_spec("prefix", "Prefix tuning", prompt_fields("PREFIX_TUNING")), HIGH_GRID),
    Method(Spec("full", "full", "Full fine-tuning"), FULL_GRID),
)
METHODS = {method.name: method for method in CATALOGUE}


def resolve_methods(methods=None) -> list[Method]:
    """Methods by name (or as given), in the order given; default: the whole catalogue."""
    if methods is None:
        return list(CATALOGUE)
    chosen = [m if isinstance(m, Method) else METHODS.get(m) for m in methods]
    unknown = [m for m, found in zip(methods, chosen, strict=True) if found is None]
    if unknown:
        raise LFTError(f"Unknown method(s) {unknown}: choose from {', '.join(METHODS)}.")
    for method in chosen:
        changed = sorted(set(method.spec.overrides) & set(DATA_FIELDS))
        if changed:
            raise LFTError(
                f"Method `{method.name}` changes {changed}: every method must see the same "
                "reviews, so a method may not change the data settings."
            )
    return chosen


def suite_config(config: Config, budget: str = DEFAULT_BUDGET, **given) -> Config:
    """`config` cut to a budget; `given` values (None: not given) win over the budget's."""
    if budget not in SUITE_BUDGETS:
        raise LFTError(f"Unknown budget `{budget}`: choose from {', '.join(SUITE_BUDGETS)}.")
    values = {**SUITE_BUDGETS[budget], **{k: v for k, v in given.items() if v is not None}}
    return config.replace(**values)


def budget_record(config: Config, name: str | None) -> dict:
    return {"name": name, **{field: getattr(config, field) for field in BUDGET_FIELDS}}


# --- Files -------------------------------------------------------------------------------------


def method_dir(out: Path, name: str) -> Path:
    return out / RUNS / run_slug(name)


def grid_file(method: Method, value: float) -> str:
    return f"grid/{method.knob}={value:g}.json"


def read_run(path: Path) -> dict | None:
    """A run file, or None when it is missing or cut short (then the run is done again)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def finished(doc: dict | None, value: float | None = None) -> bool:
    """A run that completed (at `value`, if given): kept and skipped."""
    if not doc or doc.get("train_info", {}).get("status") != "ok":
        return False
    return value is None or doc["run_info"].get("value") == value


def check_suite_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    held = [name for name in (SUMMARY, RUNS) if (out / name).exists()]
    if held and not (overwrite or resume):
        raise LFTError(
            f"Output directory `{out}` already holds a method suite ({' and '.join(held)}). "
            "Pass --resume to continue it, --overwrite to replace it, or choose another "
            "--output-dir."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LFTError(f"Output directory `{out}` cannot be created: {err.strerror}.") from None


def check_suite_config(out: Path, config: Config) -> None:
    """--resume continues a suite only with the settings (the budget among them) it began with."""
    before = (read_run(out / SUMMARY) or {}).get("config")
    if not before:
        return
    changed = changed_settings(before, config)
    if changed:
        raise LFTError(
            f"--resume: the suite in `{out}` was started with other settings "
            f"({'; '.join(changed)}). Rerun with the same settings and --budget, or pass "
            "--overwrite to start over."
        )


# --- Running -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Suite:
    """What every run of one invocation shares: the base config, data and records."""

    config: Config
    prepared: object
    out: Path
    labels: dict
    environment: dict
    eval_reviews: dict
    log: object = print


def eval_reviews_record(prepared) -> dict:
    """Which eval reviews the runs were scored on: every run of a suite must show the same."""
    indices = [int(i) for i in prepared.subsets.eval_indices]
    digest = hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:16]
    return {"count": len(indices), "indices_sha256": digest}


def validation_scores(model, prepared, config: Config) -> dict:
    scored = score_model(model, dataclasses.replace(prepared, eval=prepared.val), config)
    return {k: scored[k] for k in ("accuracy", "accuracy_ci", "f1", "eval_loss")}


def adapter_size_mb(model, spec: Spec, out: Path) -> float:
    """What the method keeps on disk (safetensors, MB = 10^6 bytes), measured, then removed."""
    with tempfile.TemporaryDirectory(dir=out) as folder:
        return save_trained(model, spec, folder)


RUN_INFO_KEYS = ("spec", "peft_config", "r", "lora_alpha", "targets")


def run_document(suite: Suite, method: Method, value, seed: int, role: str, outcome: dict):
    """One run's file: run_info, train_info, meta_info (PEFT method_comparison's layout)."""
    spec = method.at(value) if value is not None else method.spec
    run_config = spec.config_for(suite.config.replace(seed=seed))
    record = outcome.get("record", {})
    run_info = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "method": method.name,
        "label": method.label,
        "role": role,
        "seed": seed,
        "data_seed": suite.config.seed,  # the subsets: the same for every run of the suite
        "knob": method.knob,
        "value": value,
        "grid": list(method.grid),
        "spec": spec.to_dict(),
        "config": run_config.to_dict(),
        "peft_config": None,
        **suite.labels,
        "eval_reviews": suite.eval_reviews,
        **{k: record[k] for k in RUN_INFO_KEYS if k in record},
    }
    train_info = {
        "status": "failed" if "error" in outcome else "ok",
        **({"error": outcome["error"]} if "error" in outcome else {}),
        "wall_time_s": outcome.get("wall_time_s"),
        **{k: v for k, v in record.items() if k not in RUN_INFO_KEYS},
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "run_info": run_info,
        "train_info": train_info,
        "meta_info": suite.environment,
    }


def train_and_score(suite: Suite, spec: Spec, config: Config) -> dict:
    """The runner's record of one run, plus its validation scores and size on disk."""
    model, record = fit_spec(spec, suite.prepared, config, log=suite.log)
    record["validation"] = validation_scores(model, suite.prepared, spec.config_for(config))
    record["adapter_size_mb"] = adapter_size_mb(model, spec, suite.out)
    return record


def run_one(suite: Suite, method: Method, value: float, seed: int, role: str) -> dict:
    """Train and score one (method, value, seed); a failure becomes the record's error."""
    spec = method.at(value)
    config = suite.config.replace(seed=seed)
    suite.log(f"  {method.knob} {value:g}, seed {seed} ({role})")
    start = time.perf_counter()
    outcome: dict = {}
    try:
        outcome["record"] = record = train_and_score(suite, spec, config)
        suite.log(
            f"    validation accuracy {record['validation']['accuracy']:.4f}, "
            f"eval accuracy {record['accuracy']:.4f}"
        )
    except Exception as err:  # the row says why; Ctrl-C and SIGTERM still stop the suite
        outcome["error"] = f"{type(err).__name__}: {first_line(err, limit=400)}"
        suite.log(f"    failed: {outcome['error']}")
    finally:
        shutil.rmtree(suite.out / "checkpoints" / run_slug(spec.name), ignore_errors=True)
        with contextlib.suppress(OSError):  # runs resume whole, not from checkpoints
            (suite.out / "checkpoints").rmdir()
        release_free_memory()  # the model is gone: the next run's memory starts clean
    outcome["wall_time_s"] = round(time.perf_counter() - start, 2)
    return run_document(suite, method, value, seed, role, outcome)


def grid_point(doc: dict, value: float, file: str) -> dict:
    info = doc["train_info"]
    point = {"value": value, "status": info["status"], "file": file}
    if info["status"] == "ok":
        point.update(
            validation_accuracy=info["validation"]["accuracy"],
            validation_loss=info["validation"]["eval_loss"],
        )
    else:
        point["error"] = info["error"]
    return point


def pick_value(suite: Suite, method: Method) -> dict:
    """Run the method's grid with seed 0 (skipping finished points) and pick on validation."""
    folder = method_dir(suite.out, method.name)
    points = []
    for value in method.grid:
        path = folder / grid_file(method, value)
        doc = read_run(path)
        if finished(doc, value):
            suite.log(f"  {method.knob} {value:g}, seed 0 (grid): finished before, skipped")
        else:
            doc = run_one(suite, method, value, 0, "grid")
            write_json_atomic(doc, path)
        points.append(grid_point(doc, value, grid_file(method, value)))
    done = [p for p in points if p["status"] == "ok"]
    best = max(done, key=lambda p: (p["validation_accuracy"], -p["validation_loss"]), default=None)
    grid = {
        "method": method.name,
        "knob": method.knob,
        "values": list(method.grid),
        "seed": 0,
        "selected_by": SELECTED_BY,
        "points": points,
        "chosen": best and best["value"],
        "chosen_file": best and best["file"],
    }
    if best is None:
        grid["error"] = f"every {method.knob} of the grid failed; first: {points[0]['error']}"
    write_json_atomic(grid, folder / "grid.json")
    if best is not None:
        suite.log(f"  chosen {method.knob} {best['value']:g} ({SELECTED_BY})")
    return grid


def run_seeds(suite: Suite, method: Method, grid: dict, seeds: int) -> None:
    """The chosen value for every seed; seed 0 is the chosen grid run itself."""
    folder = method_dir(suite.out, method.name)
    value = grid["chosen"]
    for seed in range(seeds):
        path = folder / f"seed{seed}.json"
        if value is not None and finished(read_run(path), value):
            suite.log(f"  seed {seed}: finished before, skipped")
            continue
        if value is None:
            doc = run_document(suite, method, None, seed, "seed", {"error": grid["error"]})
        elif seed == 0:
            doc = read_run(folder / grid["chosen_file"])
            doc["run_info"].update(role="seed", reused_from=grid["chosen_file"])
        else:
            doc = run_one(suite, method, value, seed, "seed")
        write_json_atomic(doc, path)


def run_methods(
    config: Config,
    methods=None,
    *,
    seeds: int = DEFAULT_SEEDS,
    budget: str | None = None,
    log=print,
    resume: bool = False,
    overwrite: bool = False,
    prepared=None,
    command: str | None = None,
) -> dict:
    """Run the suite into `config.output_dir` (see the module docstring); return the summary.

    `config` is used as given (see `suite_config` for the budgets); `budget` names it in the
    records, and `command` the command line that ran it. `methods` are names or `Method`s
    (default: the whole catalogue).
    """
    started = time.perf_counter()
    methods = resolve_methods(methods)
    check_seeds(seeds)
    if config.val_size == 0:
        raise LFTError(
            "The method suite picks each learning rate on the validation split: pass "
            "--val-size above 0."
        )
    out = Path(config.output_dir)
    if is_main_process():
        check_suite_dir(out, overwrite=overwrite, resume=resume)
    if resume:
        check_suite_config(out, config)
    if prepared is None:
        shown = readable_path(config.data) if is_local(config.data) else config.data
        log(f"Loading data from {shown} and model {describe_model(config.model)}")
        prepared = prepare_data(config, log)
    check_model(config, lora_configs=[])  # a model that cannot classify fails once, not per run
    if overwrite and not resume:  # only now: a refused run leaves the old suite intact
        shutil.rmtree(out / RUNS, ignore_errors=True)
        for name in (SUMMARY, REPORT):
            (out / name).unlink(missing_ok=True)
    log(
        f"  {len(prepared.train)} train, {len(prepared.val)} validation, "
        f"{len(prepared.eval)} eval reviews; max length {config.max_length}; "
        f"{len(methods)} methods x {seeds} seeds"
    )
    suite = Suite(
        config,
        prepared,
        out,
        run_labels(config),
        collect_environment(),
        eval_reviews_record(prepared),
        log,
    )
    context = {"budget": budget_record(config, budget), "seeds_requested": seeds}
    context["methods_requested"] = [m.name for m in methods]
    context["command"] = command
    context["resumed"] = resume
    write_summary(suite, context, complete=False)  # the record a --resume is checked against
    for method in methods:
        log(f"{method.label}:")
        grid = pick_value(suite, method)
        run_seeds(suite, method, grid, seeds)
        write_summary(suite, context, complete=False)
    # This process's time: after a --resume, only the part it ran.
    context["wall_time_s"] = round(time.perf_counter() - started, 1)
    return write_summary(suite, context, complete=True)


# --- The summary -------------------------------------------------------------------------------


def seed_runs(folder: Path) -> list[dict]:
    """The method's seed files on disk, by seed."""
    docs = [read_run(p) for p in folder.glob("seed*.json")]
    return sorted((d for d in docs if d), key=lambda d: d["run_info"]["seed"])


def summary_row(folder: Path) -> dict:
    """One method's row, computed from its files alone."""
    grid = read_run(folder / "grid.json") or {}
    docs = seed_runs(folder)
    ok = [d for d in docs if d["train_info"]["status"] == "ok"]
    first = (docs[0] if docs else {}).get("run_info", {})
    row = {
        "method": first.get("method", folder.name),
        "label": first.get("label", folder.name),
        "knob": grid.get("knob"),
        "grid": grid.get("points", []),
        "chosen": grid.get("chosen"),
        "seeds": [d["run_info"]["seed"] for d in ok],
        "failed_seeds": [d["run_info"]["seed"] for d in docs if d not in ok],
        "errors": sorted({d["train_info"]["error"] for d in docs if d not in ok}),
    }
    row["status"] = "ok" if ok and not row["failed_seeds"] else "partial" if ok else "failed"
    if not ok:
        return row
    info = [d["train_info"] for d in ok]
    accuracies = [i["accuracy"] for i in info]
    n = info[0]["eval_samples"]
    pooled = float(np.mean(accuracies))  # every seed scores the same n reviews
    mean = lambda key: _mean([i.get(key) for i in info])  # noqa: E731
    row.update(
        accuracies=accuracies,
        accuracy_mean=round(pooled, 6),
        accuracy_sd=round(float(np.std(accuracies, ddof=1)), 6) if len(ok) > 1 else None,
        accuracy_range=[min(accuracies), max(accuracies)],
        eval_reviews=n,
        pooled_predictions=n * len(ok),
        pooled_ci=[round(x, 4) for x in accuracy_interval(pooled, n * len(ok))],
        trainable_params=info[0]["trainable_params"],
        total_params=info[0]["total_params"],
        adapter_params=info[0].get("adapter_params"),
        adapter_size_mb=info[0]["adapter_size_mb"],
        train_time_s=mean("train_runtime_s"),
        train_reviews_per_s=mean("train_samples_per_second"),
        peak_memory_mb=mean("peak_memory_mb"),
    )
    return row


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 3) if values else None


def method_folders(out: Path) -> list[Path]:
    """Every method with files here: the catalogue's order, then any others by name."""
    folders = {p.name: p for p in (out / RUNS).glob("*") if p.is_dir()}
    order = [run_slug(m.name) for m in CATALOGUE if run_slug(m.name) in folders]
    return [folders[n] for n in order + sorted(set(folders) - set(order))]


def build_summary(out: Path, config: Config, header: dict) -> dict:
    """The summary of every run on disk in `out`, with the ranking the seeds support."""
    folders = method_folders(out)
    rows = [summary_row(folder) for folder in folders]
    predictions = {
        row["method"]: [
            {
                "seed": d["run_info"]["seed"],
                "accuracy": d["train_info"]["accuracy"],
                "positive_prob": d["train_info"].get("positive_prob"),
            }
            for d in seed_runs(folder)
            if d["train_info"]["status"] == "ok"
        ]
        for row, folder in zip(rows, folders, strict=True)
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "method-suite",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **header,
        "config": config.to_dict(),
        "selected_by": SELECTED_BY,
        "rows": rows,
        "ranking": rank_methods(rows, predictions),
    }


def write_summary(suite: Suite, context: dict, *, complete: bool) -> dict:
    header = {
        "complete": complete,
        **suite.labels,
        **context,
        "eval_reviews": suite.eval_reviews,
        "eval_indices": [int(i) for i in suite.prepared.subsets.eval_indices],
        "environment": suite.environment,
    }
    summary = build_summary(suite.out, suite.config, header)
    if is_main_process():
        write_json_atomic(summary, suite.out / SUMMARY)
        (suite.out / REPORT).write_text(methods_markdown(summary) + "\n", encoding="utf-8")
    return summary
