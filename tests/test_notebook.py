"""The notebook runs top to bottom (smoke preset), and the committed one is clean."""

import json
import re

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "LightweightFineTuning.ipynb"
MACHINE_PATHS = ("/work/", "/tmp/", "/root/", "/home/", "site-packages", "C:\\\\Users")
SECRET = re.compile(r"hf_[A-Za-z0-9]{30,}|api[_-]?key|password\s*=", re.IGNORECASE)


def _cells():
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def _code_cells():
    return [c for c in _cells() if c["cell_type"] == "code" and "".join(c["source"]).strip()]


@pytest.mark.notebook
def test_notebook_executes_on_smoke_preset(tmp_path, imdb_dir, minilm):
    import papermill

    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={
            "PRESET": "smoke",
            "MODEL": minilm,
            "DATA": str(imdb_dir),
            "OUTPUT_DIR": str(tmp_path / "run"),
            "FIGURES_DIR": str(tmp_path / "figures"),
            "RUN_EXTRAS": True,
        },
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    executed = json.loads(out.read_text(encoding="utf-8"))["cells"]
    errors = [o for c in executed for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"baseline", "head", "lora", "full"} <= set(results["runs"])
    for name in ("loss_curves", "accuracy", "params_vs_accuracy", "confusion_matrix"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 5_000


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
    sources = "".join("".join(c["source"]) for c in _cells())
    figures = set(re.findall(r"FIGURES_DIR\}/([\w.-]+\.png)", sources))
    figures |= set(re.findall(r"figures/([\w.-]+\.png)", sources))
    assert {"loss_curves.png", "accuracy.png", "confusion_matrix.png"} <= figures
    for name in figures:
        assert (ROOT / "figures" / name).is_file(), name


def test_readme_figures_and_results_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?:figures|results)/[^)\s]+)\)", readme):
        assert (ROOT / target).exists(), target
    assert (ROOT / "results" / "notebook" / "results.json").is_file()
