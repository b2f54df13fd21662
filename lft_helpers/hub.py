"""Telling a local source from a Hub id, and failing fast when the Hub is out of reach."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .errors import OFFLINE_HINT, HubUnavailableError

HUB_HOST = "huggingface.co"


def is_local(source: str) -> bool:
    """A source is local when it names an existing path or looks like one."""
    return Path(source).exists() or source.startswith((".", "/", "~")) or os.sep + os.sep in source


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect: seconds, not the libraries' long retry loops."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    endpoint = os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub(what: str, name: str) -> None:
    """Raise one clear message when `name` (a Hub id) cannot be fetched."""
    if not hub_reachable():
        raise HubUnavailableError(
            f"Cannot fetch the {what} `{name}`: the Hugging Face Hub is unreachable from here "
            f"(no network, or HF_HUB_OFFLINE is set). {OFFLINE_HINT}"
        )


def display_name(source: str) -> str:
    """A label for results and tables that never leaks this machine's absolute paths."""
    if not is_local(source):
        return source
    path = Path(source).expanduser()
    if not path.is_absolute():
        return source
    try:
        return os.path.relpath(path)
    except ValueError:
        return path.name
