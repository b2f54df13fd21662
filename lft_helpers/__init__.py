"""lft_helpers: the computing side of the LightweightFineTuning notebook.

Layers, lowest first; a module imports only from its own layer or those below it
(tests/test_layers.py checks):

- foundations: errors (LFTError and its messages), labels (class names), flags (command-line
  flags generated from dataclass fields)
- config (the one Config object and its presets) and specs (every way to fine-tune as a named
  Spec: variants, LoRA ranks)
- sources and the machine: hub (local or Hub sources, the Hub check), runtime (device,
  precision, threads, memory, CPU flags)
- data: datachecks (checks of the user's files), truncation (head+tail), data (loading,
  stratified subsets, duplicates, tokenization), prepare_imdb (Stanford's archive to parquet)
- model: modeling (encoder and head, PEFT configs, target checks)
- training and scoring: training (the Trainer, and the optimizers and callbacks a spec may
  name), evaluation (metrics, probabilities, intervals), inference (the fast path for serving),
  analysis (errors, lengths, paired tests), probe (logistic regression on frozen pooled
  embeddings)
- results documents: reporting (results.json, tables, the sentences the notebook shows). It
  sits below the experiment layer, not after it: the experiment modules write results
  documents, so the module that builds them comes first; the views, plotting and the CLI that
  show them sit above.
- experiment: pipeline (data preparation, training and scoring steps, resume), experiment (the
  one runner of specs), sweep (the rank sweep), scaling (LoRA and full fine-tuning on growing
  training slices), methods (the PEFT method suite: catalogue, learning-rate grids, seeds,
  resumable per-run files), shipping (reload, merge, serve, re-score a saved run), estimate
  (run time before a run), long_reviews (head-only against head+tail on a saved run)
- views: explore (looking at the data), plotting (figures)
- bench, the benchmark subpackage: peak (the machine's matmul peak), eval_speed, train_speed,
  memory (each probe in a process of its own, started through bench/__main__), flops, subjects
  (the models and reviews it measures on), settings (its flags) and report
- cli (the command-line twin) and __main__ (`python -m lft_helpers`)
"""

from .config import Config, make_config
from .errors import LFTError

__all__ = ["Config", "LFTError", "make_config"]
__version__ = "0.1.0"
