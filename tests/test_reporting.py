import json
from pathlib import Path

import pytest

from lft_helpers.reporting import (
    SCHEMA_VERSION,
    VARIANT_LABELS,
    build_results,
    collect_environment,
    comparison_table,
    load_results,
    to_markdown,
    write_json_atomic,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _results(config):
    runs = {
        "baseline": {"accuracy": 0.5, "f1": 0.4, "eval_loss": 0.7, "trainable_params": 0},
        "lora": {
            "accuracy": 0.9,
            "f1": 0.91,
            "eval_loss": 0.3,
            "trainable_params": 1000,
            "trainable_pct": 0.5,
            "train_runtime_s": 12.0,
        },
    }
    return build_results(config, {"model_label": "m", "data_label": "d"}, runs, [3, 1, 2])


def test_environment_names_versions_and_hardware():
    env = collect_environment()
    assert env["packages"]["torch"] and env["packages"]["transformers"]
    assert env["device"] in ("cpu", "cuda") and env["torch_threads"] >= 1


def test_results_round_trip_and_table(tiny_config, tmp_path):
    results = _results(tiny_config)
    path = write_json_atomic(results, tmp_path / "r" / "results.json")
    loaded = load_results(path.parent)
    assert loaded["eval_indices"] == [3, 1, 2]
    assert loaded["config"]["model"] == tiny_config.model
    table = comparison_table(loaded)
    assert list(table.index) == ["Untrained head (baseline)", "LoRA"]
    assert table.loc["LoRA", "accuracy"] == 0.9
    assert "| LoRA | 0.9000" in to_markdown(table)


def test_atomic_write_keeps_previous_file_on_failure(tiny_config, tmp_path):
    path = write_json_atomic({"ok": 1}, tmp_path / "results.json")
    with pytest.raises(TypeError):
        write_json_atomic({"bad": object()}, path)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_markdown_table_keeps_long_text_whole_and_escaped():
    import pandas as pd

    review = "A | B *great* <br /> film_title " + "word " * 60
    table = pd.DataFrame({"excerpt": [review], "reviews": [12345], "share": [0.25]})
    text = to_markdown(table)
    header, rule, row = text.splitlines()
    assert header == "| excerpt | reviews | share |"
    assert "A \\| B \\*great\\* &lt;br /&gt; film\\_title" in row
    assert row.count("word") == 60  # never cut, unlike pandas' 50-character display
    assert row.endswith(" | 12,345 | 25.0% |")


def test_interval_is_public_and_formatted():
    from lft_helpers.reporting import format_interval

    assert format_interval([0.84461, 0.875]) == "0.845-0.875"
    assert format_interval(None) is None


def test_atomic_write_gives_the_file_the_usual_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = write_json_atomic({"ok": 1}, tmp_path / "results.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_report_still_reads_a_schema_version_1_results_file(capsys):
    """The notebook's results.json at commit 327fc47, from before `model_source`, `complete`,
    `overlap`, `environment.git` and the runs' `spec` and `peft_config` (its per-review
    probabilities and loss histories left out to keep the file small)."""
    from lft_helpers.cli import main

    old = FIXTURES / "results_v1.json"
    recorded = load_results(old)
    assert recorded["schema_version"] == 1 < SCHEMA_VERSION
    assert main(["report", str(old)]) == 0
    setup, header, _, *rows = capsys.readouterr().out.splitlines()  # _: the index's name
    assert setup.startswith("Model sentence-transformers/all-MiniLM-L6-v2 on ")
    assert "2,000 training and 2,000 evaluation reviews" in setup
    assert header.split()[:2] == ["accuracy", "acc"]
    shown = {line.split("  ")[0]: line for line in rows}
    assert list(shown) == list(VARIANT_LABELS.values())  # every run, in the usual order
    for name, label in VARIANT_LABELS.items():
        assert f" {recorded['runs'][name]['accuracy']:.4f} " in shown[label]
