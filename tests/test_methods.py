"""The PEFT method suite: the catalogue's hooks, the probe, and the resumable multi-seed runner
on the tiny random DistilBERT."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest

from lft_helpers import methods
from lft_helpers.errors import LFTError
from lft_helpers.experiment import fit_spec, prepare_model
from lft_helpers.methods import METHODS, run_methods
from lft_helpers.pipeline import prepare_data
from lft_helpers.probe import fold_scaler, pooling_convention
from lft_helpers.reporting import (
    compare_seeded,
    methods_markdown,
    methods_table,
    rank_methods,
    suite_provenance,
)
from lft_helpers.specs import VARIANT_SPECS, Spec
from lft_helpers.training import make_optimizer

SUITE = ["logreg-embeddings", "lora-qv", "prefix"]  # two that run, one that fails on DistilBERT
QUIET = lambda line: None  # noqa: E731


def trainable(model) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, synthetic_data_dir, tmp_path_factory):
    from conftest import tiny_run_config

    config = tiny_run_config(
        tiny_model_dir,
        synthetic_data_dir,
        train_size=16,
        val_size=8,
        eval_size=16,
        output_dir=str(tmp_path_factory.mktemp("suite")),
    )
    return config, prepare_data(config)


@pytest.fixture(scope="module")
def suite(tiny):
    """The suite run once: two methods that work, one that fails, two seeds."""
    config, prepared = tiny
    summary = run_methods(config, SUITE, seeds=2, budget="smoke", prepared=prepared, log=QUIET)
    return config, prepared, summary


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


# --- The catalogue and its hooks ------------------------------------------------------------------


def test_the_catalogue_names_every_method_of_the_issue():
    assert set(METHODS) >= {
        "logreg-embeddings", "head", "bitfit", "lora-qv", "lora-all", "rslora", "dora",
        "pissa", "loraplus", "vera", "ia3", "adalora", "prompt", "ptuning", "prefix", "full",
    }  # fmt: skip
    for method in METHODS.values():
        assert len(method.grid) >= 2 and list(method.grid) == sorted(method.grid)
    # Each family's grid sits where its usual rate is (issue 13: 1e-2, 1e-3, 5e-5).
    assert 1e-2 in METHODS["ia3"].grid and 1e-2 in METHODS["prompt"].grid
    assert 1e-3 in METHODS["lora-qv"].grid and 5e-5 in METHODS["full"].grid


def test_a_grid_point_changes_only_the_rate_or_c(tiny):
    config, _ = tiny
    full = METHODS["full"].at(2e-5)
    assert full.learning_rate(full.config_for(config)) == 2e-5
    lora = METHODS["lora-qv"].at(3e-3).config_for(config)
    assert (lora.learning_rate, lora.lora_r, lora.target_modules) == (3e-3, 8, None)
    assert METHODS["logreg-embeddings"].at(10.0).probe["C"] == 10.0
    assert METHODS["logreg-embeddings"].at(10.0).learning_rate(config) is None


def test_existing_specs_keep_their_record():
    """New hook fields appear in a spec's record only when set."""
    assert set(VARIANT_SPECS["lora"].to_dict()) == {
        "name", "train", "label", "overrides", "peft", "save_dir",
    }  # fmt: skip
    assert METHODS["bitfit"].spec.to_dict()["trainable"] == ["bias"]
    with pytest.raises(LFTError, match="no `name`"):
        Spec("x", "peft", optimizer={"loraplus_lr_ratio": 4})


def test_bitfit_trains_every_bias_and_the_head(tiny):
    config, _ = tiny
    names = trainable(prepare_model(METHODS["bitfit"].spec, config))
    head = ("pre_classifier", "classifier")
    assert all(n.endswith(".bias") or n.split(".")[0] in head for n in names)
    assert sum(n.startswith("distilbert.") for n in names) >= 2 * 6  # 2 layers' biases, at least
    assert {"classifier.weight", "pre_classifier.weight"} <= set(names)


def test_loraplus_gives_the_b_matrices_a_higher_rate(tiny):
    from transformers import TrainingArguments

    config, _ = tiny
    spec = METHODS["loraplus"].spec
    model = prepare_model(spec, config)
    args = TrainingArguments(output_dir="unused", learning_rate=1e-3, report_to="none")
    groups = make_optimizer(model, spec.optimizer, args).param_groups
    rates = {g["lr"] for g in groups if g["params"]}
    assert rates >= {1e-3, 1e-3 * 16}
    with pytest.raises(LFTError, match="Unknown optimizer"):
        make_optimizer(model, {"name": "lion"}, args)


def test_adalora_reallocates_its_ranks_during_training(tiny, tmp_path):
    """Without the callback PEFT never sets a rank pattern: it is set by update_and_allocate."""
    config, prepared = tiny
    config = config.replace(output_dir=str(tmp_path))
    model, record = fit_spec(METHODS["adalora"].at(1e-2), prepared, config, log=QUIET)
    applied = model.peft_config["default"]
    assert applied.total_step == 2  # 16 reviews in batches of 8, one epoch
    assert applied.rank_pattern, "update_and_allocate was never called"
    assert record["peft_config"]["peft_type"] == "ADALORA"


def test_prompt_learning_methods_get_the_encoder_sizes(tiny):
    config, _ = tiny
    model = prepare_model(METHODS["prompt"].spec, config)
    assert model.peft_config["default"].token_dim == 32
    assert any("prompt_encoder" in n for n in trainable(model))


# --- The embeddings probe -------------------------------------------------------------------------


def test_the_pooling_follows_the_model(tiny_model_dir, tmp_path):
    assert pooling_convention(str(tiny_model_dir))["pooling"] == "cls"
    folder = tmp_path / "st-model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    modules = [
        {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True})
    )
    convention = pooling_convention(str(folder))
    assert (convention["pooling"], convention["normalize"]) == ("mean", True)


def test_the_offline_minilm_is_mean_pooled(minilm):
    assert pooling_convention(minilm)["pooling"] == "mean"


def test_the_folded_regression_scores_raw_embeddings_as_sklearn_does():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, [1.0, 5.0, 0.2, 2.0], size=(60, 4))
    y = (x[:, 0] + rng.normal(size=60) > 3).astype(int)
    scaler = StandardScaler().fit(x)
    regression = LogisticRegression().fit(scaler.transform(x), y)
    weight, bias = fold_scaler(scaler, regression)
    np.testing.assert_allclose(x @ weight + bias, regression.decision_function(scaler.transform(x)))


# --- The suite ------------------------------------------------------------------------------------


def test_every_run_file_has_the_schema(suite):
    config, prepared, _ = suite
    out = methods.method_dir(methods.Path(config.output_dir), "lora-qv")
    seen_reviews = set()
    for seed in (0, 1):
        doc = load(out / f"seed{seed}.json")
        assert set(doc) == {"schema_version", "run_info", "train_info", "meta_info"}
        info, run = doc["run_info"], doc["train_info"]
        assert run["status"] == "ok" and info["seed"] == seed == info["config"]["seed"]
        assert info["data_seed"] == config.seed
        assert info["peft_config"]["target_modules"] == ["q_lin", "v_lin"]
        assert info["config"]["learning_rate"] == info["value"]
        for key in ("accuracy", "accuracy_ci", "positive_prob", "train_runtime_s"):
            assert key in run
        assert len(run["positive_prob"]) == len(prepared.eval)
        assert run["adapter_size_mb"] > 0 and run["validation"]["accuracy"] is not None
        assert doc["meta_info"]["packages"]["peft"] and "git" in doc["meta_info"]
        seen_reviews.add(info["eval_reviews"]["indices_sha256"])
    assert len(seen_reviews) == 1  # every seed scored on the same eval reviews


def test_the_grid_is_recorded_and_seed_zero_is_its_choice(suite):
    config, _, _ = suite
    out = methods.method_dir(methods.Path(config.output_dir), "logreg-embeddings")
    grid = load(out / "grid.json")
    assert [p["value"] for p in grid["points"]] == list(METHODS["logreg-embeddings"].grid)
    best = max(grid["points"], key=lambda p: (p["validation_accuracy"], -p["validation_loss"]))
    assert grid["chosen"] == best["value"]
    seed0 = load(out / "seed0.json")
    assert seed0["run_info"]["value"] == grid["chosen"]
    assert seed0["train_info"] == load(out / grid["chosen_file"])["train_info"]
    assert load(out / "seed1.json")["run_info"]["value"] == grid["chosen"]


def test_a_failing_method_keeps_its_row_with_the_error(suite):
    config, _, summary = suite
    row = next(r for r in summary["rows"] if r["method"] == "prefix")
    assert row["status"] == "failed" and "past key values" in row["errors"][0]
    seed = load(methods.method_dir(methods.Path(config.output_dir), "prefix") / "seed1.json")
    assert seed["train_info"]["status"] == "failed"
    table = methods_table(summary)
    assert "past key values" in table.loc["Prefix tuning", "note"]
    assert "Prefix tuning" in summary["ranking"]["sentence"]
    assert "Prefix tuning" in methods_markdown(summary)


def test_the_summary_matches_the_run_files(suite):
    config, _, summary = suite
    table = methods_table(summary)
    for name in ("logreg-embeddings", "lora-qv"):
        folder = methods.method_dir(methods.Path(config.output_dir), name)
        runs = [load(folder / f"seed{k}.json")["train_info"] for k in (0, 1)]
        acc = [r["accuracy"] for r in runs]
        row = next(r for r in summary["rows"] if r["method"] == name)
        assert row["accuracy_mean"] == pytest.approx(np.mean(acc))
        assert row["accuracy_sd"] == pytest.approx(np.std(acc, ddof=1), abs=1e-6)
        assert row["trainable_params"] == runs[0]["trainable_params"]
        assert row["train_time_s"] == pytest.approx(np.mean([r["train_runtime_s"] for r in runs]))
        label = METHODS[name].label
        assert table.loc[label, "accuracy"] == pytest.approx(np.mean(acc))
        assert table.loc[label, "seeds"] == 2
    probe_params = summary["rows"][0]["trainable_params"]
    assert probe_params == 32 + 1  # one weight per embedding dimension, and a bias
    assert load(methods.Path(config.output_dir) / "summary.json")["rows"] == summary["rows"]


def test_resume_skips_finished_runs_and_retries_failed_ones(suite, monkeypatch):
    config, prepared, _ = suite
    out = methods.Path(config.output_dir)
    finished = sorted((out / "runs").glob("l*/**/*.json"))  # logreg-embeddings, lora-qv
    before = {p: p.read_bytes() for p in finished}
    trained = []

    def counting(spec, *args, **kwargs):
        trained.append(spec.name)
        return fit_spec(spec, *args, **kwargs)

    monkeypatch.setattr(methods, "fit_spec", counting)
    with pytest.raises(LFTError, match="already holds a method suite"):
        run_methods(config, SUITE, seeds=2, prepared=prepared, log=QUIET)
    with pytest.raises(LFTError, match="max_length"):
        run_methods(config.replace(max_length=40), SUITE, seeds=2, resume=True, log=QUIET)
    run_methods(config, SUITE, seeds=2, budget="smoke", prepared=prepared, resume=True, log=QUIET)
    assert set(trained) == {"prefix"}  # nothing that finished is trained again
    assert {p: p.read_bytes() for p in finished} == before


def test_the_ranking_says_which_differences_the_seeds_support():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)

    def seeds(correct_share: float, base_seed: int) -> list[dict]:
        runs = []
        for seed in range(3):
            r = np.random.default_rng(base_seed + seed)
            right = r.random(400) < correct_share
            preds = np.where(right, labels, 1 - labels)
            runs.append(
                {"seed": seed, "accuracy": float(right.mean()), "positive_prob": preds.tolist()}
            )
        return runs

    strong, weak = seeds(0.9, 10), seeds(0.7, 30)
    # One review fewer right than `strong`, in one seed: below it, but by nothing to speak of.
    close = [dict(r) for r in strong]
    right = np.flatnonzero(np.asarray(close[0]["positive_prob"]) == labels)
    flipped = list(close[0]["positive_prob"])
    flipped[right[0]] = 1 - flipped[right[0]]
    close[0].update(positive_prob=flipped, accuracy=close[0]["accuracy"] - 1 / 400)
    assert compare_seeded(strong, weak)["supported"]
    assert not compare_seeded(strong, close)["supported"]
    runs = {"strong": strong, "close": close, "weak": weak}
    rows = [
        {"method": m, "label": m.upper(), "accuracy_mean": np.mean([r["accuracy"] for r in s]),
         "accuracy_sd": 0.01, "seeds": [0, 1, 2], "errors": []}
        for m, s in runs.items()
    ]  # fmt: skip
    rows.append({"method": "broken", "label": "BROKEN", "seeds": [], "errors": ["ValueError: x"]})
    ranking = rank_methods(rows, runs)
    sentence = ranking["sentence"]
    assert ranking["best"] == "strong"
    assert "support that it is above WEAK" in sentence
    assert "do not separate it from CLOSE" in sentence
    assert "No result: BROKEN (ValueError: x)" in sentence


def test_the_command_writes_the_suite_and_its_figure(tiny_model_dir, synthetic_data_dir, tmp_path):
    from lft_helpers.cli import main

    out = tmp_path / "suite"
    args = ["methods", "--model", str(tiny_model_dir), "--data", str(synthetic_data_dir)]
    args += ["--budget", "smoke", "--methods", "logreg-embeddings", "--seeds", "1"]
    args += ["--max-length", "48", "--precision", "fp32", "--output-dir", str(out)]
    assert main(args) == 0
    assert (out / "runs" / "logreg-embeddings" / "seed0.json").is_file()
    assert (out / "pareto.png").stat().st_size > 0
    summary = load(out / "summary.json")
    assert summary["complete"] and summary["budget"]["name"] == "smoke"
    assert summary["config"]["train_size"] == 32  # the smoke preset's size
    assert "Logistic regression on embeddings" in (out / "report.md").read_text()
    # What a notebook loading these results says about them: the command that wrote them (as
    # given, so a reader can run it), when, on what, and how long it took.
    assert summary["command"] == shlex.join(["python", "-m", "lft_helpers", *args])
    assert summary["wall_time_s"] > 0 and summary["resumed"] is False
    told = suite_provenance(summary, "results/methods/summary.json")
    assert summary["command"] in told and summary["created"][:10] in told
    assert summary["environment"]["cpu"] in told and "stopped before" not in told


def test_the_pareto_front_keeps_what_nothing_beats():
    from lft_helpers.plotting import pareto_front

    points = [(1, 0.5), (2, 0.7), (3, 0.6), (4, 0.8), (4, 0.75)]
    assert pareto_front(points) == [0, 1, 3]
