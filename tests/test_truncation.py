"""Head+tail truncation: the config option, the exact tokens kept, and the `truncation` command
end to end on a tiny trained run."""

import json
import shutil

import pytest
from datasets import Dataset

from conftest import NEGATIVE, NEUTRAL, POSITIVE
from lft_helpers import cli
from lft_helpers.config import Config, make_config
from lft_helpers.data import tokenize_dataset
from lft_helpers.errors import LFTError
from lft_helpers.long_reviews import compare_truncation
from lft_helpers.reporting import load_results
from lft_helpers.truncation import encode_head_tail

WORDS = [*POSITIVE, *NEGATIVE, *NEUTRAL]  # vocab.txt order after the 5 special tokens
CLS, SEP = 2, 3


def word_ids(words):
    return [5 + WORDS.index(w) for w in words]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


# -- the option -------------------------------------------------------------------------------


def test_head_tokens_must_leave_room_for_the_tail():
    with pytest.raises(LFTError, match="--head-tokens") as err:
        Config(truncation="head+tail", max_length=64, head_tokens=62)
    assert "--max-length" in str(err.value) and "62" in str(err.value)
    assert Config(truncation="head+tail", max_length=64, head_tokens=61).head_tokens == 61
    # Head-only truncation never reads head_tokens, so the default 128 is fine at 64 tokens.
    assert Config(max_length=64).truncation == "head"


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_head_tokens_must_be_a_whole_number(bad):
    with pytest.raises(LFTError, match="--head-tokens"):
        Config(head_tokens=bad)


def test_truncation_choices_are_checked():
    with pytest.raises(LFTError, match="--truncation"):
        Config(truncation="tail")


def test_truncation_flags_reach_the_config():
    args = cli.build_parser().parse_args(
        ["run", "--truncation", "head+tail", "--head-tokens", "10", "--max-length", "64"]
    )
    config = cli.config_from_args(args)
    assert (config.truncation, config.head_tokens, config.max_length) == ("head+tail", 10, 64)
    assert make_config("cpu").truncation == "head"


# -- the tokens kept --------------------------------------------------------------------------


def test_long_review_keeps_exactly_its_head_and_tail(tokenizer):
    enc = encode_head_tail(tokenizer, [" ".join(WORDS)], max_length=12, head_tokens=4)
    # 28 content tokens: [CLS], the first 4, the last 12 - 2 - 4 = 6, [SEP].
    assert enc["input_ids"] == [[CLS, *word_ids(WORDS[:4]), *word_ids(WORDS[-6:]), SEP]]
    assert enc["attention_mask"] == [[1] * 12]
    assert "special_tokens_mask" not in enc


def test_zero_head_tokens_keeps_only_the_tail(tokenizer):
    enc = encode_head_tail(tokenizer, [" ".join(WORDS)], max_length=6, head_tokens=0)
    assert enc["input_ids"] == [[CLS, *word_ids(WORDS[-4:]), SEP]]


def test_text_reading_sep_is_content_not_a_boundary(tokenizer):
    text = "[SEP] " + " ".join(WORDS)
    enc = encode_head_tail(tokenizer, [text], max_length=8, head_tokens=2)
    assert enc["input_ids"] == [[CLS, SEP, word_ids(WORDS[:1])[0], *word_ids(WORDS[-4:]), SEP]]


def test_short_reviews_are_untouched_and_nothing_exceeds_max_length(tokenizer):
    texts = [" ".join(WORDS[:n]) for n in (0, 1, 9, 10, 11, 28)]
    labels = [i % 2 for i in range(len(texts))]
    dataset = Dataset.from_dict({"text": texts, "label": labels})
    head = tokenize_dataset(dataset, tokenizer, 12)
    both = tokenize_dataset(dataset, tokenizer, 12, truncation="head+tail", head_tokens=3)
    full = tokenizer(texts)["input_ids"]
    assert both["labels"] == labels
    for ids_head, ids_both, ids_full in zip(
        head["input_ids"], both["input_ids"], full, strict=True
    ):
        assert len(ids_both) <= 12
        assert ids_both[0] == CLS and ids_both[-1] == SEP
        assert CLS not in ids_both[1:] and SEP not in ids_both[1:-1]
        if len(ids_full) <= 12:  # up to 10 words: the whole review, as head-only keeps it
            assert ids_both == ids_head == ids_full
        else:
            assert len(ids_both) == 12
            assert ids_both[:4] == ids_head[:4] and ids_both[4:-1] == ids_full[-8:-1]  # 3 + 7
            assert ids_both != ids_head
    assert [len(m) for m in both["attention_mask"]] == [len(i) for i in both["input_ids"]]


# -- the command on a finished run -----------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, synthetic_data_dir, tokenizer, tmp_path_factory):
    """A tiny `run` whose tokenizer sees the words (so head+tail changes the ids), with max
    length 24: the synthetic reviews run to 35 tokens, so a good share are long."""
    model_dir = tmp_path_factory.mktemp("tiny-words")
    shutil.copytree(tiny_model_dir, model_dir, dirs_exist_ok=True)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(str(model_dir))
    out = tmp_path_factory.mktemp("truncation") / "run"
    args = ["--model", str(model_dir), "--data", str(synthetic_data_dir), "--preset", "smoke"]
    args += ["--train-size", "16", "--val-size", "0", "--eval-size", "40", "--max-length", "24"]
    args += ["--precision", "fp32", "--output-dir", str(out)]
    assert cli.main(["run", *args]) == 0
    return out


@pytest.fixture(scope="module")
def measured(finished_run):
    assert cli.main(["truncation", str(finished_run), "--head-tokens", "6"]) == 0
    return json.loads((finished_run / "truncation.json").read_text())


def test_head_only_reproduces_the_recorded_accuracy(finished_run, measured):
    lora = load_results(finished_run)["runs"]["lora"]
    head = measured["strategies"]["head"]
    assert measured["max_length"] == measured["recorded"]["max_length"] == 24
    assert measured["recorded"]["truncation"] == "head"
    assert head["accuracy"] == lora["accuracy"] == measured["recorded"]["accuracy"]
    # The loss, unlike accuracy, moves with every logit: the very same inputs and model.
    assert head["eval_loss"] == lora["eval_loss"]
    assert head["f1"] == lora["f1"]
    assert head["accuracy_ci"] == lora["accuracy_ci"]


def test_report_schema_and_paired_counts_agree(measured):
    assert measured["eval_reviews"] == 40 and measured["head_tokens"] == 6
    assert 0 < measured["long_reviews"] < 40
    for name in ("head", "head+tail"):
        score = measured["strategies"][name]
        assert set(score) == {"accuracy", "accuracy_ci", "reviews", "f1", "eval_loss", "long"}
        low, high = score["accuracy_ci"]
        assert low <= score["accuracy"] <= high and score["reviews"] == 40
        assert score["long"]["reviews"] == measured["long_reviews"]
    # The long reviews reach the model as other tokens, so the logits (and the loss) move.
    assert measured["strategies"]["head"]["eval_loss"] != score["eval_loss"]
    c = measured["comparison"]
    # Reviews that fit are tokenized identically, so only long reviews can be discordant.
    assert c["only_head"] + c["only_head_tail"] <= measured["long_reviews"]
    correct = {n: round(s["accuracy"] * 40) for n, s in measured["strategies"].items()}
    assert c["only_head_tail"] - c["only_head"] == correct["head+tail"] - correct["head"]
    long = {
        n: s["long"]["accuracy"] * measured["long_reviews"]
        for n, s in measured["strategies"].items()
    }
    assert round(long["head+tail"] - long["head"]) == c["only_head_tail"] - c["only_head"]
    assert 0 <= c["p_value"] <= 1 and c["differ"] == (c["p_value"] < 0.05)


def test_command_output_flag_and_clear_errors(finished_run, tmp_path, capsys):
    target = tmp_path / "t.json"
    code = cli.main(
        [
            "truncation",
            str(finished_run),
            "--max-length",
            "16",
            "--head-tokens",
            "4",
            "--output",
            str(target),
        ]
    )
    assert code == 0
    report = json.loads(target.read_text())
    assert report["max_length"] == 16 and report["recorded"]["max_length"] == 24
    assert "McNemar" in capsys.readouterr().out
    with pytest.raises(LFTError, match="--head-tokens"):
        compare_truncation(finished_run, head_tokens=22)
    assert cli.main(["truncation", str(tmp_path / "nowhere")]) == 2
    assert "finished run" in capsys.readouterr().err


def test_a_head_tail_run_trains_scores_and_rescores_with_head_tail(
    finished_run, synthetic_data_dir, tmp_path
):
    """--truncation reaches the pipeline (training and scoring) and `rescore_saved_run`."""
    from lft_helpers.shipping import rescore_saved_run

    model_dir = load_results(finished_run)["config"]["model"]
    out = tmp_path / "head-tail"
    args = ["--model", model_dir, "--data", str(synthetic_data_dir), "--preset", "smoke"]
    args += ["--train-size", "16", "--val-size", "0", "--eval-size", "40", "--max-length", "24"]
    args += ["--truncation", "head+tail", "--head-tokens", "6"]
    args += ["--precision", "fp32", "--output-dir", str(out)]
    assert cli.main(["run", *args]) == 0
    lora = load_results(out)["runs"]["lora"]
    report = compare_truncation(out)
    assert report["recorded"]["truncation"] == "head+tail" and report["head_tokens"] == 6
    assert report["strategies"]["head+tail"]["eval_loss"] == lora["eval_loss"]
    assert report["strategies"]["head"]["eval_loss"] != lora["eval_loss"]
    assert round(rescore_saved_run(out, precision="fp32")["eval_loss"], 6) == lora["eval_loss"]


def test_rescore_command_checks_the_reloaded_adapter_against_the_record(
    finished_run, tmp_path, capsys
):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    assert cli.main(["rescore", str(copy), "--precision", "fp32"]) == 0
    check = json.loads((copy / "rescore.json").read_text())
    recorded = load_results(copy)["runs"]["lora"]
    assert check["accuracy"] == recorded["accuracy"] and check["same_accuracy"]
    assert check["changed_predictions"] == 0 and check["max_prob_difference"] < 1e-4
    assert check["eval_reviews"] == 40
    assert "the same accuracy" in capsys.readouterr().out


def test_a_stopped_later_run_in_the_folder_blocks_rescoring(finished_run, tmp_path, capsys):
    """Its adapter may have replaced the one results.json describes."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    (copy / "results.partial.json").write_text('{"complete": false}')
    assert cli.main(["rescore", str(copy)]) == 2
    assert "progress file of a later run" in capsys.readouterr().err
    with pytest.raises(LFTError, match="--resume"):
        compare_truncation(copy)
