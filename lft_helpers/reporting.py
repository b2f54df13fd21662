"""Results as data: the results JSON, the environment record, and the comparison table."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

from .runtime import cpu_name, device_name, gpu_name

SCHEMA_VERSION = 1
PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "scikit-learn", "numpy")
VARIANT_LABELS = {
    "baseline": "Untrained head (baseline)",
    "head": "Head only (linear probe)",
    "lora": "LoRA",
    "full": "Full fine-tuning",
}


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
    }


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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
                "acc 95% CI": _interval(run.get("accuracy_ci")),
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


def _interval(ci) -> str | None:
    return f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else None


FORMATS = {
    "accuracy": "{:.4f}",
    "F1": "{:.4f}",
    "eval loss": "{:.4f}",
    "trainable params": "{:,.0f}",
    "trainable %": "{:.3f}",
    "train time (s)": "{:.1f}",
    "train samples/s": "{:.2f}",
    "eval samples/s": "{:.1f}",
    "peak memory (MB)": "{:,.0f}",
    "saved size (MB)": "{:.2f}",
}


def formatted_table(table):
    """The table as strings with sensible number formats; missing values shown as '-'."""
    import pandas as pd

    shown = table.copy().astype(object)
    for col in shown.columns:
        fmt = FORMATS.get(col, "{}")
        shown[col] = ["-" if v is None or pd.isna(v) else fmt.format(v) for v in table[col]]
    return shown


def format_table(table) -> str:
    return formatted_table(table).to_string()


def to_markdown(table) -> str:
    """The table as GitHub markdown (no extra dependency)."""
    shown = formatted_table(table)
    header = [shown.index.name or "", *shown.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in zip(shown.index, shown.values, strict=True):
        lines.append("| " + " | ".join([str(name), *row]) + " |")
    return "\n".join(lines)


def describe_variant(name: str, record: dict) -> str:
    """One sentence with the numbers that matter for a variant."""
    label = VARIANT_LABELS.get(name, name)
    low, high = record.get("accuracy_ci", (record["accuracy"], record["accuracy"]))
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


def describe_setup(results: dict) -> str:
    """Which model, data, sizes and hardware produced the numbers."""
    cfg, env = results["config"], results["environment"]
    hardware = env.get("gpu") or f"{env['cpu']} ({env['torch_threads']} threads)"
    return (
        f"Model {results['model_label']} on {results['data_label']}: {cfg['train_size']:,} "
        f"training and {cfg['eval_size']:,} evaluation reviews, max length {cfg['max_length']}, "
        f"{cfg['epochs']:g} epoch{'' if cfg['epochs'] == 1 else 's'}, seed {cfg['seed']}; "
        f"{env['device']}: {hardware}; "
        f"torch {env['packages']['torch']}, transformers {env['packages']['transformers']}, "
        f"peft {env['packages']['peft']}."
    )


def config_table(config):
    """The configuration as a one-column table for display."""
    import pandas as pd

    values = {k: v for k, v in config.to_dict().items() if k != "extra"}
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


def compare_lora_to_full(results: dict) -> str | None:
    """How far LoRA is from full fine-tuning, in accuracy points and trained parameters."""
    runs = results["runs"]
    if not {"lora", "full"} <= set(runs):
        return None
    lora, full = runs["lora"], runs["full"]
    gap = 100 * (full["accuracy"] - lora["accuracy"])
    where = "below" if gap > 0 else "above"
    ratio = full["trainable_params"] / max(lora["trainable_params"], 1)
    return (
        f"LoRA is {abs(gap):.1f} accuracy points {where} full fine-tuning "
        f"({lora['accuracy']:.4f} vs {full['accuracy']:.4f}) while training "
        f"{lora['trainable_pct']:.2f}% of the parameters ({ratio:,.0f}x fewer), saving "
        f"{lora.get('saved_size_mb', float('nan')):.2f} MB instead of "
        f"{full.get('saved_size_mb', float('nan')):.1f} MB."
    )


def summary_markdown(results: dict, sweep: dict | None = None) -> str:
    """The notebook's closing summary, written from the results so it always matches them."""
    runs = results["runs"]
    lines = [f"- **Setup.** {describe_setup(results)}"]
    if {"baseline", "lora"} <= set(runs):
        base, lora = runs["baseline"], runs["lora"]
        lines.append(
            f"- **LoRA works.** From {base['accuracy']:.3f} (untrained head, chance) to "
            f"{lora['accuracy']:.3f} accuracy (95% CI {lora['accuracy_ci'][0]:.3f}-"
            f"{lora['accuracy_ci'][1]:.3f}) by training {lora['trainable_params']:,} of "
            f"{lora['total_params']:,} parameters ({lora['trainable_pct']:.2f}%) for "
            f"{lora['train_runtime_s'] / 60:.1f} minutes."
        )
    gap = compare_lora_to_full(results)
    if gap:
        lines.append(f"- **Against full fine-tuning.** {gap}")
    if {"head", "lora"} <= set(runs):
        lines.append(
            f"- **Against a linear probe.** Training only the head reaches "
            f"{runs['head']['accuracy']:.3f}: the adapters inside the encoder add "
            f"{100 * (runs['lora']['accuracy'] - runs['head']['accuracy']):.1f} points."
        )
    if sweep:
        best = max(sweep["runs"].items(), key=lambda kv: kv[1]["accuracy"])
        accs = [r["accuracy"] for r in sweep["runs"].values()]
        lines.append(
            f"- **Rank.** On the reduced sweep budget accuracy ranged from {min(accs):.3f} to "
            f"{max(accs):.3f}; the best was {best[0]} ({best[1]['accuracy']:.3f})."
        )
    return "\n".join(lines)


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
