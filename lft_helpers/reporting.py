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
    for name, run in results["runs"].items():
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


def print_table(results: dict) -> None:
    print(format_table(comparison_table(results)))
