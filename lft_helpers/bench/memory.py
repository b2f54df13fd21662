"""Training memory of LoRA against full fine-tuning, each in a fresh process.

`python -m lft_helpers.bench IN OUT` runs one probe: a fresh interpreter's peak holds one
variant only, so one variant's heap never inflates the other's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..config import Config
from ..errors import LFTError
from ..modeling import load_tokenizer
from ..runtime import PeakMemory, configure_threads, device_name, peak_rss_mb
from ..training import fast_training_callbacks, state_bytes
from .train_speed import build_variant, run_steps, training_batches


def probe_request(spec: str, variant: str, config: Config, dataset, rows) -> dict:
    """Everything the memory probe process needs, as plain JSON."""
    order = [i for batch in rows for i in batch]
    picked = dataset.select(order)
    return {
        "spec": spec,
        "variant": variant,
        "config": config.to_dict(),
        "batch_sizes": [len(batch) for batch in rows],
        "features": picked.to_dict(),
    }


def run_memory_probe(request: dict) -> dict:
    """Inside the probe process: build the variant, train on the batches, report memory."""
    from datasets import Dataset

    config = Config(**request["config"])
    configure_threads(request.get("threads") or None)
    tokenizer = load_tokenizer(config)
    model, learning_rate = build_variant(request["spec"], config, request["variant"])
    dataset = Dataset.from_dict(request["features"])
    rows, start = [], 0
    for size in request["batch_sizes"]:
        rows.append(list(range(start, start + size)))
        start += size
    with PeakMemory() as memory:
        trainer = run_steps(
            model,
            dataset,
            tokenizer,
            config,
            learning_rate=learning_rate,
            rows=rows,
            pad_to=None,
            callbacks=fast_training_callbacks(config),  # what `run` trains with
        )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "start_mb": round(memory.start_mb, 1),
        "peak_mb": round(memory.peak_mb if memory.cuda else peak_rss_mb(), 1),
        "trainable_params": int(trainable),
        "memory_device": device_name(),
        **state_bytes(model, trainer.optimizer),
    }


def measure_memory_in_subprocess(request: dict, timeout: float = 3600) -> dict:
    """Run `run_memory_probe` in a fresh interpreter: its peak holds one variant only."""
    with tempfile.TemporaryDirectory(prefix="lft-bench-") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(request), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "lft_helpers.bench", str(src), str(dst)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if done.returncode != 0 or not dst.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LFTError(f"The {request['variant']} memory probe failed: {tail[0]}")
        return json.loads(dst.read_text(encoding="utf-8"))


def measure_memory_pair(spec, config, dataset, *, threads: int = 0, log=print) -> dict:
    """Peak memory and gradient/optimizer bytes of LoRA against full fine-tuning.

    Both train on the same two longest length-grouped batches: the peak comes from the longest.
    """
    lengths = [len(ids) for ids in dataset["input_ids"]]
    rows = training_batches(lengths, config.train_batch_size, 8, grouped=True, seed=config.seed)
    rows = rows[-2:]
    out = {}
    for variant in ("lora", "full"):
        log(f"  memory {variant}: fresh process, 2 steps")
        request = probe_request(spec, variant, config, dataset, rows)
        out[variant] = measure_memory_in_subprocess({**request, "threads": threads})
    lora, full = out["lora"], out["full"]
    state = lora["grad_bytes"] + lora["optimizer_bytes"]
    out["state_fraction"] = round(state / (full["grad_bytes"] + full["optimizer_bytes"]), 5)
    out["peak_ratio"] = round(lora["peak_mb"] / full["peak_mb"], 4)
    return out


def main_probe(argv) -> int:
    """Entry of the memory probe process: read the request, write the measurement."""
    src, dst = argv
    result = run_memory_probe(json.loads(Path(src).read_text(encoding="utf-8")))
    Path(dst).write_text(json.dumps(result), encoding="utf-8")
    return 0
