"""Every bad input stops before training with one actionable line (see tests/BAD_INPUTS.md).

Most cases go through the real command line in a subprocess and check the contract: exit code 2,
one stderr line starting `error: `, no traceback, the input named, and nothing trained or written.
"""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli as run_cli_as_user
from lft_helpers.config import make_config
from lft_helpers.data import load_imdb
from lft_helpers.errors import LFTError
from lft_helpers.experiment import run_experiment
from lft_helpers.hub import readable_path


def run_cli(*args):
    return run_cli_as_user(*args, env={"HF_HUB_OFFLINE": "1"}, timeout=120)


def refused(out, output_dir, *fragments) -> str:
    """Assert the one-line refusal contract and that no training started; return the message."""
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Variant" not in out.stdout and "step " not in out.stdout, out.stdout
    assert not (output_dir / "checkpoints").exists()
    return lines[0]


def write_split_files(directory, train: pd.DataFrame, test: pd.DataFrame, fmt="parquet"):
    directory.mkdir(parents=True, exist_ok=True)
    for split, frame in (("train", train), ("test", test)):
        if fmt == "parquet":
            frame.to_parquet(directory / f"{split}.parquet", index=False)
        else:
            frame.to_csv(directory / f"{split}.csv", index=False)
    return directory


def reviews(n: int, labels=(0, 1), text="a fine film") -> pd.DataFrame:
    texts = [f"{text} {i}" for i in range(n)]
    return pd.DataFrame({"text": texts, "label": [labels[i % len(labels)] for i in range(n)]})


@pytest.fixture
def cli_args(tiny_model_dir, synthetic_data_dir, tmp_path):
    """Flags of a valid smoke run; a case replaces one of them with its bad value."""

    def build(**changes):
        flags = {
            "--model": str(tiny_model_dir),
            "--data": str(synthetic_data_dir),
            "--preset": "smoke",
            "--precision": "fp32",
            "--output-dir": str(tmp_path / "out"),
            **changes,
        }
        return [part for flag, value in flags.items() for part in (flag, value)]

    return build


# Data


def test_data_path_missing(cli_args, tmp_path):
    out = run_cli("run", *cli_args(**{"--data": str(tmp_path / "nope")}))
    refused(out, tmp_path / "out", "nope", "does not exist", "--data")


def test_directory_without_test_file(cli_args, tmp_path):
    data = tmp_path / "half"
    data.mkdir()
    reviews(20).to_parquet(data / "train.parquet")
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(out, tmp_path / "out", "half", "no test file", "test.parquet")


def test_missing_text_column_offers_flag(cli_args, tmp_path):
    frame = reviews(40).rename(columns={"text": "review"})
    data = write_split_files(tmp_path / "d", frame, frame)
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(
        out, tmp_path / "out", "train.parquet", "no text column `text`", "review", "--text-column"
    )


def test_missing_label_column_offers_flag(cli_args, tmp_path):
    frame = reviews(40).rename(columns={"label": "sentiment"})
    data = write_split_files(tmp_path / "d", frame, frame, fmt="csv")
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(out, tmp_path / "out", "train.csv", "label column `label`", "--label-column")


def test_labels_outside_two_classes(cli_args, tmp_path):
    train = reviews(60, labels=(0, 1, 2))
    data = write_split_files(tmp_path / "d", train, reviews(40))
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(out, tmp_path / "out", "train.parquet", "20 label(s)", "two classes", "2", "neg/pos")


def test_unknown_label_words(cli_args, tmp_path):
    words = reviews(40, labels=("bad", "good"))
    data = write_split_files(tmp_path / "d", words, words, fmt="csv")
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(out, tmp_path / "out", "train.csv", "'bad'", "'good'", "negative/positive")


def test_too_many_empty_texts_are_refused(cli_args, tmp_path):
    train = reviews(40)
    train.loc[:9, "text"] = ["", "  ", None, "", "", "", "", "", "", ""]
    data = write_split_files(tmp_path / "d", train, reviews(40))
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(out, tmp_path / "out", "train.parquet", "10 of 40", "empty or missing text", "10%")


def test_corrupt_file(cli_args, tmp_path):
    data = write_split_files(tmp_path / "d", reviews(40), reviews(40))
    (data / "test.parquet").write_bytes(b"PAR1 this is not parquet")
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(out, tmp_path / "out", "test.parquet", "cannot be read as parquet")


def test_split_with_one_class(cli_args, tmp_path):
    data = write_split_files(tmp_path / "d", reviews(40), reviews(40, labels=(1, 1)))
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(out, tmp_path / "out", "test.parquet", "only positive", "both classes")


def test_two_files_for_one_split(cli_args, tmp_path):
    """An old csv export beside a new parquet one: neither is picked silently."""
    data = write_split_files(tmp_path / "d", reviews(200), reviews(80))
    reviews(50).to_csv(data / "train.csv", index=False)
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(
        out,
        tmp_path / "out",
        "2 files for the train split",
        "`train.csv`, `train.parquet`",
        "Move all but one",
        "--data",
    )


def test_eval_size_too_large_once_repeated_reviews_are_left_out(cli_args, tmp_path):
    train = reviews(120)
    test = pd.concat([train.iloc[:60], reviews(20, text="another film")])  # 60 repeat train
    data = write_split_files(tmp_path / "d", train, test)
    out = run_cli("run", *cli_args(**{"--data": str(data)}))
    refused(
        out,
        tmp_path / "out",
        "test.parquet",
        "10 negative and 10 positive reviews (20 rows)",
        "not counting 60 that repeat a train review",
        "eval_size=32",
        "--keep-eval-duplicates",
    )


def test_train_size_larger_than_data(cli_args, tmp_path):
    out = run_cli("run", *cli_args(**{"--train-size": "1000"}))
    refused(out, tmp_path / "out", "train.parquet", "60 negative and 60 positive", "--train-size")


def test_eval_size_larger_than_data(cli_args, tmp_path):
    out = run_cli("run", *cli_args(**{"--eval-size": "500"}))
    refused(out, tmp_path / "out", "test.parquet", "40 negative and 40 positive", "--eval-size")


@pytest.mark.parametrize("flag", ["--train-size", "--eval-size"])
def test_size_not_positive(cli_args, tmp_path, flag):
    out = run_cli("run", *cli_args(**{flag: "0"}))
    field = flag.strip("-").replace("-", "_")
    refused(out, tmp_path / "out", f"`{field}`=0", "positive whole number")


# Model


def test_max_length_above_model_limit(cli_args, tmp_path):
    out = run_cli("run", *cli_args(**{"--max-length": "512"}))
    refused(out, tmp_path / "out", "--max-length 512", "128 tokens", "128 or less")


def test_model_path_missing(cli_args, tmp_path):
    out = run_cli("run", *cli_args(**{"--model": str(tmp_path / "no-model")}))
    refused(out, tmp_path / "out", "no-model", "not a model directory")


def test_model_without_sequence_classification(cli_args, tiny_model_dir, tmp_path):
    from transformers import ViTConfig

    model_dir = tmp_path / "vit"
    shutil.copytree(tiny_model_dir, model_dir, ignore=shutil.ignore_patterns("*.json", "*.st*"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, model_dir / name)
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(model_dir)
    out = run_cli("run", *cli_args(**{"--model": str(model_dir)}))
    refused(out, tmp_path / "out", "vit", "cannot be used for sequence classification")


def test_lora_rank_not_positive(cli_args, tmp_path):
    out = run_cli("run", *cli_args(**{"--lora-r": "0"}))
    refused(out, tmp_path / "out", "`lora_r`=0", "positive whole number")


def test_target_modules_match_nothing(cli_args, tmp_path):
    out = run_cli("run", *cli_args(**{"--target-modules": "query,v_lin"}))
    refused(out, tmp_path / "out", "['query']", "match nothing", "q_lin")


# Output directory


def test_output_dir_cannot_be_written(cli_args, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = run_cli("run", *cli_args(**{"--output-dir": str(blocker / "out")}))
    refused(out, blocker, "a-file/out", "cannot be created")


def test_output_dir_with_results_is_not_overwritten(cli_args, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "results.json").write_text('{"runs": {"lora": {"accuracy": 0.9}}}\n')
    before = (out_dir / "results.json").read_bytes()
    out = run_cli("run", *cli_args())
    refused(out, out_dir, "already holds results.json", "--overwrite")
    assert (out_dir / "results.json").read_bytes() == before


def test_output_dir_with_unfinished_run_is_not_overwritten(cli_args, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "results.partial.json").write_text('{"complete": false, "runs": {}}\n')
    out = run_cli("run", *cli_args())
    refused(out, out_dir, "already holds results.partial.json", "--resume to continue it")


def test_resume_with_other_settings(cli_args, tiny_model_dir, synthetic_data_dir, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    started = make_config(
        "smoke", model=str(tiny_model_dir), data=str(synthetic_data_dir), precision="fp32"
    )
    record = {"config": started.replace(learning_rate=1e-3).to_dict(), "runs": {}}
    (out_dir / "results.json").write_text(json.dumps(record))
    out = run_cli("run", *cli_args(), "--resume")
    refused(out, out_dir, "--resume", "learning_rate 0.001 there, 0.002 now", "--overwrite")


# In-process: what load_imdb fixes and reports instead of refusing


@pytest.fixture
def data_config(tiny_config):
    return lambda directory, **changes: tiny_config.replace(
        data=str(directory), train_size=10, val_size=0, eval_size=10, **changes
    )


@pytest.mark.parametrize(
    "words", [("neg", "pos"), ("negative", "positive"), (" NEG ", "Pos"), ("0", "1"), (0.0, 1.0)]
)
def test_label_words_are_mapped_to_0_and_1(tmp_path, data_config, words):
    frame = reviews(20, labels=words)
    data = load_imdb(data_config(write_split_files(tmp_path / "d", frame, frame, fmt="csv")))
    assert list(data["train"]["label"]) == [0, 1] * 10
    assert data["train"].features["label"].dtype == "int64"


def test_few_empty_texts_are_dropped_and_counted(tmp_path, data_config):
    train = reviews(40)
    train.loc[[3, 8], "text"] = ["   ", None]
    notes = []
    # Given as the relative path that climbs from here to the temporary folder: the note
    # shows it as a person would read it (absolute here), never as ../../tmp/...
    directory = os.path.relpath(write_split_files(tmp_path / "d", train, reviews(40)))
    data = load_imdb(data_config(directory), notes.append)
    assert data["train"].num_rows == 38 and data["test"].num_rows == 40
    assert len(notes) == 1 and "dropped 2 of 40" in notes[0] and "train.parquet" in notes[0]
    shown = notes[0].split("`")[1]
    assert shown == readable_path(tmp_path / "d" / "train.parquet") and "../.." not in shown


def test_renamed_columns_load_with_flags(tmp_path, data_config):
    frame = reviews(20).rename(columns={"text": "review", "label": "sentiment"})
    directory = write_split_files(tmp_path / "d", frame, frame)
    data = load_imdb(data_config(directory, text_column="review", label_column="sentiment"))
    assert data["train"].column_names == ["text", "label"]


def test_numeric_text_column_is_refused(tmp_path, data_config):
    frame = reviews(20).assign(stars=range(20))
    directory = write_split_files(tmp_path / "d", frame, frame)
    with pytest.raises(LFTError, match="`stars` holds int64 values, not review text.*--text-col"):
        load_imdb(data_config(directory, text_column="stars"))


def test_text_and_label_column_must_differ(tmp_path, data_config):
    directory = write_split_files(tmp_path / "d", reviews(20), reviews(20))
    with pytest.raises(LFTError, match="both name `label`"):
        load_imdb(data_config(directory, text_column="label"))


@pytest.mark.parametrize(
    "name,content",
    [("train.csv", b""), ("train.jsonl", b'{"text": "a", "label": 1}\n{broken\n')],
)
def test_unreadable_csv_and_jsonl(tmp_path, data_config, name, content):
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / name).write_bytes(content)
    reviews(20).to_csv(directory / "test.csv", index=False)
    with pytest.raises(LFTError, match=f"`.*{name}` cannot be read") as err:
        load_imdb(data_config(directory))
    assert "\n" not in str(err.value)


# In-process: what a run warns about and records instead of refusing


def test_repeated_reviews_are_warned_recorded_and_left_out(tiny_config, tmp_path):
    train = reviews(120)
    test = pd.concat([train.iloc[:20], reviews(60, text="another film")], ignore_index=True)
    test.loc[:19, "text"] = test.loc[:19, "text"].str.replace(" ", "  ")  # spacing differs
    data = write_split_files(tmp_path / "d", train, test)
    config = tiny_config.replace(data=str(data), train_size=32, val_size=16, eval_size=32)
    notes = []
    results = run_experiment(config, ("baseline",), log=notes.append)
    warnings = [n for n in notes if "duplicate" in n]
    assert len(warnings) == 1 and warnings[0].startswith("Warning: duplicate reviews")
    assert "20 test reviews repeat a train review, left out of the eval subset" in warnings[0]
    assert "--keep-eval-duplicates" in warnings[0]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["overlap"]["test_in_train"] == 20
    assert saved["overlap"]["eval_duplicates"] == "excluded"
    assert not set(saved["eval_indices"]) & set(range(20)) and saved["complete"] is True
    assert results["overlap"] == saved["overlap"]


def test_log_names_model_and_data_so_a_person_can_read_them(
    tiny_config, minilm, tmp_path, monkeypatch
):
    """The offline MiniLM given as a folder is named as what it is. A path one level up stays
    relative; one further away is shown absolute, never as ../../../lib/..."""
    from lft_helpers.modeling import offline_model_path

    monkeypatch.chdir(tmp_path)  # the data folder is a sibling, the model far away
    config = tiny_config.replace(model=str(offline_model_path()), max_length=32)
    notes = []
    run_experiment(config, ("baseline",), log=notes.append)
    assert notes[0] == (
        f"Loading data from ../{Path(config.data).name} and model "
        f"sentence-transformers/all-MiniLM-L6-v2 ({offline_model_path()})"
    ), notes[0]
    assert str(offline_model_path()).startswith("/")
