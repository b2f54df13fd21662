"""Head-only against head+tail truncation, measured on a finished run's own adapter and reviews.

Both strategies score the same saved model on the same eval reviews at the same max length, so
only the tokens a long review keeps differ: reviews that fit are tokenized identically, and the
paired (McNemar) test on the reviews only one strategy gets right isolates the truncation.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from .config import Config
from .data import token_lengths
from .errors import LFTError
from .evaluation import accuracy_interval, compute_metrics
from .modeling import check_max_length
from .pipeline import PARTIAL
from .reporting import collect_environment, load_results
from .shipping import load_adapter, saved_eval_reviews, score_reviews
from .specs import VARIANT_SPECS

STRATEGIES = ("head", "head+tail")
SIGNIFICANCE = 0.05


def load_finished_run(run_dir: str | Path) -> tuple[dict, Path]:
    """A finished run's results and its saved LoRA adapter folder, or one clear error."""
    run_dir = Path(run_dir)
    adapter = run_dir / VARIANT_SPECS["lora"].save_dir
    try:
        results = load_results(run_dir)
    except (OSError, ValueError) as err:
        results = {"error": err}
    missing = [k for k in ("config", "eval_indices", "runs") if k not in results]
    if missing:
        why = results.get("error") or f"results.json lacks {', '.join(missing)}"
        raise LFTError(
            f"Cannot read a finished run in `{run_dir}` ({why}). Pass the --output-dir of a "
            "completed `python -m lft_helpers run` or `compare`."
        )
    if (run_dir / PARTIAL).is_file():
        raise LFTError(
            f"Run `{run_dir}` holds the progress file of a later run that was stopped "
            f"({PARTIAL}): the saved adapter may be that run's, not the one results.json "
            "describes. Finish the later run with its --resume command, then try again."
        )
    if not (adapter / "adapter_config.json").is_file():
        raise LFTError(
            f"Run `{run_dir}` has no saved LoRA adapter at `{adapter}`. Pass the --output-dir of "
            "a `run` or `compare` that finished its LoRA variant."
        )
    return results, adapter


def summarize_correct(correct: np.ndarray) -> dict:
    """Accuracy of a boolean right/wrong vector, with its 95% Wilson interval (None for none)."""
    n = len(correct)
    if not n:
        return {"accuracy": None, "accuracy_ci": None, "reviews": 0}
    accuracy = float(correct.mean())
    return {
        "accuracy": round(accuracy, 6),
        "accuracy_ci": [round(x, 4) for x in accuracy_interval(accuracy, n)],
        "reviews": n,
    }


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test: the reviews only A gets right against those only B gets right."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    p_value = float(binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": p_value}


def compare_truncation(
    run_dir: str | Path,
    *,
    max_length: int | None = None,
    head_tokens: int | None = None,
    precision: str | None = None,
) -> dict:
    """Score the run's saved adapter on its own `eval_indices` with head-only and with head+tail
    truncation at one max length (default: the run's), the head+tail keeping `head_tokens`
    leading tokens (default: the run's setting). `precision` defaults to the run's, so the
    strategy the run used reproduces its recorded accuracy."""
    results, adapter = load_finished_run(run_dir)
    recorded = Config.from_dict(results["config"])
    # Validating through Config names the flag at fault (--head-tokens, --max-length).
    config = recorded.replace(
        max_length=max_length or recorded.max_length,
        head_tokens=recorded.head_tokens if head_tokens is None else head_tokens,
        truncation="head+tail",
        precision=precision or recorded.precision,
    )
    model, tokenizer = load_adapter(adapter)
    check_max_length(config, tokenizer)
    reviews = saved_eval_reviews(results, config)
    labels = np.asarray(reviews["label"])
    long = token_lengths(reviews, tokenizer) > config.max_length
    scores, correct = {}, {}
    for strategy in STRATEGIES:
        logits = score_reviews(model, tokenizer, reviews, config.replace(truncation=strategy))
        correct[strategy] = logits.argmax(-1) == labels
        metrics = compute_metrics(labels, logits)
        scores[strategy] = {
            **summarize_correct(correct[strategy]),
            "f1": round(metrics["f1"], 6),
            "eval_loss": round(metrics["eval_loss"], 6),
            "long": summarize_correct(correct[strategy][long]),
        }
    paired = mcnemar(correct["head"], correct["head+tail"])
    lora = results["runs"].get("lora", {})
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(run_dir),
        "adapter": str(adapter),
        "model_label": results.get("model_label"),
        "data_label": results.get("data_label"),
        "max_length": config.max_length,
        "head_tokens": config.head_tokens,
        "precision": config.precision,
        "eval_reviews": len(labels),
        "long_reviews": int(long.sum()),
        "recorded": {
            "accuracy": lora.get("accuracy"),
            "max_length": recorded.max_length,
            "truncation": recorded.truncation,
            "head_tokens": recorded.head_tokens,
        },
        "strategies": scores,
        "comparison": {
            "test": "McNemar exact (binomial on the discordant pairs)",
            "only_head": paired["only_a"],
            "only_head_tail": paired["only_b"],
            "p_value": paired["p_value"],
            "gap_points": round(
                100 * float(correct["head+tail"].mean() - correct["head"].mean()), 4
            ),
            "differ": paired["p_value"] < SIGNIFICANCE,
        },
        "environment": collect_environment(),
    }


def _accuracy(score: dict) -> str:
    if score["accuracy"] is None:
        return "n/a"
    low, high = score["accuracy_ci"]
    return f"{score['accuracy']:.4f} [{low:.3f}, {high:.3f}]"


def describe_truncation(report: dict) -> list[str]:
    """The comparison in a few lines of text (accuracies with 95% intervals, McNemar)."""
    n, long, length = report["eval_reviews"], report["long_reviews"], report["max_length"]
    tail = f"head+tail ({report['head_tokens']} head tokens)"
    lines = [
        f"Truncation at max length {length} on {n} eval reviews, {long} of them longer "
        f"({report['model_label']}, adapter {report['adapter']}):"
    ]
    for strategy, label in (("head", "head only"), ("head+tail", tail)):
        score = report["strategies"][strategy]
        lines.append(
            f"  {label:<28} accuracy {_accuracy(score)}; on the long reviews "
            f"{_accuracy(score['long'])}"
        )
    c = report["comparison"]
    lines.append(
        f"  McNemar exact test: {c['only_head_tail']} reviews only head+tail gets right, "
        f"{c['only_head']} only head-only; gap {c['gap_points']:+.2f} points, "
        f"p = {c['p_value']:.3g} ({'a difference' if c['differ'] else 'no difference'} "
        f"at {SIGNIFICANCE})"
    )
    return lines
