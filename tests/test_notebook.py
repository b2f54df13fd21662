"""The notebook runs top to bottom (smoke preset), and the committed one is clean."""

import json
import re
from types import SimpleNamespace

import pytest

from conftest import ROOT
from lft_helpers.reporting import compare_lora_to_full, describe_setup, summary_markdown

NOTEBOOK = ROOT / "LightweightFineTuning.ipynb"
MACHINE_PATHS = ("/work/", "/tmp/", "/root/", "/home/", "site-packages", "C:\\\\Users")
SECRET = re.compile(r"hf_[A-Za-z0-9]{30,}|api[_-]?key|password\s*=", re.IGNORECASE)
# A measured quantity written into fixed markdown: any decimal, a percentage, a ratio (1.2x),
# a size, or a ± error bar. A rerun with another model or preset would make it false; such
# statements are generated from the results instead (lft_helpers.reporting).
RUN_FIGURES = re.compile(
    r"(?<![\w.])("
    r"\d+\.\d+"
    r"|\d+(\.\d+)?\s?%"
    r"|\d+(\.\d+)?\s?[x×]\b"
    r"|\d+(\.\d+)?\s?([kKMG]i?B)\b"
    r"|±\s?\d"
    r")"
)
# What may hold such figures: formulas ($...$), code (`...`), link targets, and two constants.
ALLOWED = re.compile(
    r"\$[^$]*\$|`[^`]*`|\]\([^)]*\)|ln 2 ≈ 0\.69|\b95%\s+(?:confidence\s+)?(?:intervals?|CI)\b"
)


def _cells():
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def _code_cells():
    return [c for c in _cells() if c["cell_type"] == "code" and "".join(c["source"]).strip()]


CONFIGURATIONS = ("minilm-on-imdb", "tiny-distilbert-on-synthetic")


@pytest.fixture(scope="module", params=CONFIGURATIONS)
def executed(request, tmp_path_factory):
    """The notebook run top to bottom on the smoke preset with two different models and data:
    the offline MiniLM on real IMDb, and a tiny random DistilBERT on synthetic reviews."""
    import papermill

    if request.param == "minilm-on-imdb":
        model, data = request.getfixturevalue("minilm"), request.getfixturevalue("imdb_dir")
    else:
        model = request.getfixturevalue("tiny_model_dir")
        data = request.getfixturevalue("synthetic_data_dir")
    tmp = tmp_path_factory.mktemp(request.param)
    out = tmp / "executed.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={
            "PRESET": "smoke",
            "MODEL": str(model),
            "DATA": str(data),
            "OUTPUT_DIR": str(tmp / "run"),
            "FIGURES_DIR": str(tmp / "figures"),
            "RUN_EXTRAS": True,
        },
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    cells = json.loads(out.read_text(encoding="utf-8"))["cells"]
    results = json.loads((tmp / "run" / "results.json").read_text())
    sweep = json.loads((tmp / "run" / "sweep" / "results.json").read_text())
    return SimpleNamespace(cells=cells, results=results, sweep=sweep, figures=tmp / "figures")


def markdown_outputs(cells) -> str:
    return "\n".join(
        "".join(o["data"]["text/markdown"])
        for c in cells
        for o in c.get("outputs", [])
        if "text/markdown" in o.get("data", {})
    )


@pytest.mark.notebook
def test_notebook_executes_on_smoke_preset(executed):
    errors = [
        o for c in executed.cells for o in c.get("outputs", []) if o["output_type"] == "error"
    ]
    assert not errors
    assert {"baseline", "head", "lora", "full"} <= set(executed.results["runs"])
    assert executed.results["complete"] is True
    for name in ("loss_curves", "accuracy", "params_vs_accuracy", "confusion_matrix", "sweep"):
        assert (executed.figures / f"{name}.png").stat().st_size > 5_000


@pytest.mark.notebook
def test_generated_prose_states_its_own_runs_results(executed):
    """What the notebook says it saw is its own run's numbers, whichever model and data ran."""
    shown = markdown_outputs(executed.cells)
    results, runs = executed.results, executed.results["runs"]
    assert describe_setup(results) in shown
    assert summary_markdown(results, executed.sweep) in shown
    assert compare_lora_to_full(results) in shown
    for name in ("baseline", "lora"):
        assert f"{runs[name]['accuracy']:.4f}" in shown, name
    assert f"{len(results['eval_indices']):,} evaluation reviews" in shown


def test_committed_notebook_ran_once_in_order():
    counts = [c.get("execution_count") for c in _code_cells()]
    assert counts == list(range(1, len(counts) + 1)), counts


def test_committed_notebook_has_no_errors_widgets_or_walls_of_logs():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert "widgets" not in notebook["metadata"]
    for cell in _code_cells():
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output.get("ename")
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {})
            text = "".join(output.get("text", []))
            assert len(text.splitlines()) <= 40, text[:200]


def test_committed_notebook_has_no_machine_paths_or_secrets():
    text = NOTEBOOK.read_text(encoding="utf-8")
    for path in MACHINE_PATHS:
        assert path not in text, path
    assert not SECRET.search(text)
    assert NOTEBOOK.stat().st_size < 2_000_000


def test_parameters_cell_is_tagged_and_figures_exist():
    tagged = [c for c in _code_cells() if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    # A figure must exist if the committed run drew it: its cell shows an image. (The method
    # suite's figure is drawn only where suite results are committed.)
    figures = set()
    for cell in _code_cells():
        source = "".join(cell["source"])
        names = set(re.findall(r"FIGURES_DIR\}/([\w.-]+\.png)", source))
        names |= set(re.findall(r"figures/([\w.-]+\.png)", source))
        if any("image/png" in out.get("data", {}) for out in cell.get("outputs", [])):
            figures |= names
    assert {"loss_curves.png", "accuracy.png", "confusion_matrix.png"} <= figures
    for name in figures:
        assert (ROOT / "figures" / name).is_file(), name


def test_readme_figures_and_results_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?:figures|results)/[^)\s]+)\)", readme):
        assert (ROOT / target).exists(), target
    assert (ROOT / "results" / "notebook" / "results.json").is_file()


def run_figures(markdown: str) -> list[str]:
    """Measured figures stated in a markdown text, outside the allow-list."""
    return [m.group(0) for m in RUN_FIGURES.finditer(ALLOWED.sub(" ", markdown))]


# The reviewers' check (before-stop hook); ours must flag at least what it flags.
REVIEWERS = re.compile(
    r"(?<![\w.])(\d+\.\d{2,}|\d+(\.\d+)?\s?x\b|\d+(\.\d+)?\s?(MB|MiB|KB|GB)\b|±\s?\d)"
)
SAMPLES = [
    "its interval contains 0.5",
    "about ±1.5 points at 2,000",
    "about 1.2x the unmerged model",
    "the benchmark measured 1.3x",
    "a 2.9 MB adapter",
    "saving 0.85 MB instead of 86.7 MB",
    "peak memory 4,408 MiB",
    "accuracy near 50%",
    "0.35 points",
    "an 852 KB adapter",
    "an 852 kB adapter",
    "LoRA reaches 0.8605",
]
FIXED_TEXT = [
    "## 10. Comparison table",
    "**LoRA** (Hu et al., 2021) fine-tunes",
    "$\\Delta W = \\frac{\\alpha}{r} B A$ with $r \\ll d$",
    "We expect the loss to fall from ln 2 ≈ 0.69 (chance).",
    "the same logits (within `1e-4`)",
    "all 25,000 + 25,000 reviews, r = 1, 2, 4, 8, 16 and 32",
    "[badge](https://colab.research.google.com/v1.2/x.ipynb)",
    "`results/notebook/results.json` and `lora_alpha = 2r`",
    "accuracy with its 95% confidence interval, the 95% intervals",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_hygiene_flags_measured_figures_at_least_as_the_reviewers_do(text):
    assert run_figures(text), text
    assert REVIEWERS.search(text) is None or run_figures(text)


@pytest.mark.parametrize("text", FIXED_TEXT)
def test_hygiene_allows_method_text(text):
    assert run_figures(text) == []


def test_markdown_cells_state_no_run_specific_numbers():
    found = {
        i: run_figures("".join(c["source"]))
        for i, c in enumerate(_cells())
        if c["cell_type"] == "markdown"
    }
    assert not {i: f for i, f in found.items() if f}, found
