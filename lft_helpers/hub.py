"""Telling a local source from a Hub id, and failing fast when the Hub is out of reach."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OFFLINE_HINT, HubUnavailableError


def is_local(source: str) -> bool:
    """A source is local when it names an existing path or looks like one."""
    return Path(source).exists() or source.startswith((".", "/", "~")) or os.sep + os.sep in source


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as the Hugging Face libraries read it (at import), or as set since."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper()
    return constants.HF_HUB_OFFLINE or flag in {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick request to the Hub through huggingface_hub's own HTTP client.

    That client is the one every download uses, so this answer honours what they honour:
    HF_ENDPOINT, the proxy variables (HTTPS_PROXY, ALL_PROXY, NO_PROXY) and any client factory
    set with `huggingface_hub.set_client_factory`. Any HTTP answer counts as reachable; seconds,
    not the libraries' long retry loops, decide that it is not.
    """
    if hub_offline():
        return False
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # DNS, refused, proxy, TLS or timeout: the client's errors vary by version
        return False
    return True


def in_hf_cache(what: str, name: str) -> bool:
    """Whether the libraries can load the Hub id `name` from this machine's cache, offline.

    A model needs its config.json in the hub cache (HF_HOME/hub), where transformers looks.
    A dataset needs a prepared copy in the datasets cache (HF_HOME/datasets): offline,
    `datasets.load_dataset` reads only that, never the raw files in the hub cache.
    """
    if what == "dataset":
        from datasets import config
        from datasets.naming import camelcase_to_snakecase

        *namespace, dataset = name.split("/")
        folder = Path(config.HF_DATASETS_CACHE).expanduser() / "___".join(
            [*namespace, camelcase_to_snakecase(dataset)]
        )
        return any(path.is_dir() for path in folder.glob("*/*/*"))  # config/version/hash
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repo id, so not cached either
        return False


def require_hub(what: str, name: str) -> None:
    """Raise one clear message when `name` (a Hub id) is neither cached here nor fetchable.

    A cached copy is enough, online or not: the libraries fall back to it by themselves.
    """
    if in_hf_cache(what, name) or hub_reachable():
        return
    raise HubUnavailableError(
        f"Cannot fetch the {what} `{name}`: the Hugging Face Hub is unreachable from here "
        f"(no network, or HF_HUB_OFFLINE is set) and it is not in the local Hugging Face "
        f"cache. {OFFLINE_HINT}"
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


def readable_path(path: str | Path) -> str:
    """A path as a log line shows it: relative to the current folder where that is shorter and
    climbs at most one level (`data/imdb`, `../shared/data/imdb`), else absolute (`/tmp/x/leak`
    rather than `../../tmp/x/leak`)."""
    full = os.path.abspath(Path(path).expanduser())
    try:
        relative = os.path.relpath(full)
    except ValueError:  # on another drive (Windows): no relative form
        return full
    clear = Path(relative).parts.count("..") <= 1
    return relative if clear and len(relative) < len(full) else full
