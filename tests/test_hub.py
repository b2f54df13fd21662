"""The Hub check asks the way the Hugging Face libraries do: their cache, endpoint and proxies.

Each check runs in a fresh interpreter, because huggingface_hub reads HF_HOME, HF_ENDPOINT,
HF_HUB_OFFLINE and the proxy variables once, at import or at its first request.
"""

import os
import shutil
import socketserver
import subprocess
import sys
import threading
import time

import pytest

from lft_helpers.errors import HubUnavailableError
from lft_helpers.hub import is_local, require_hub

HUB_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE")
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
REVISION = "0123456789abcdef0123456789abcdef01234567"
UNRESOLVABLE = "hub.lft-test.invalid"  # .invalid never resolves (RFC 2606)


def test_is_local_tells_a_path_from_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for hub_id in ("distilbert-base-uncased", "stanfordnlp/imdb"):
        assert not is_local(hub_id), hub_id
    # Written as a path, a source is local before it exists: a mistyped folder then gets a
    # "not found" message, not a Hub lookup and an offline error.
    for path in ("./imdb", "../shared/data/imdb", "/data/imdb", "~/imdb"):
        assert is_local(path), path
    # A folder here named like a Hub id is what the user means.
    (tmp_path / "stanfordnlp" / "imdb").mkdir(parents=True)
    assert is_local("stanfordnlp/imdb")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter whose Hugging Face and proxy settings are exactly `env`."""
    clean = {
        k: v for k, v in os.environ.items() if k.upper() not in HUB_VARIABLES + PROXY_VARIABLES
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**clean, "TOKENIZERS_PARALLELISM": "false", **env},
        timeout=120,
    )


def cache_model(hf_home, repo_id: str, model_dir) -> None:
    """`model_dir` laid out as a download leaves it: hub/models--org--name/snapshots/<rev>/."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(model_dir, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


CHECK_AND_LOAD = """
from lft_helpers.config import make_config
from lft_helpers.hub import is_local, require_hub
from lft_helpers.modeling import load_model, load_tokenizer
require_hub("model", "lft-test/tiny-distilbert")
config = make_config("smoke", model="lft-test/tiny-distilbert", data="unused")
model, tokenizer = load_model(config), load_tokenizer(config)
print(type(model).__name__, model.config.dim, tokenizer("great movie")["input_ids"])
"""


def test_a_cached_model_is_accepted_offline_and_loads(tiny_model_dir, tmp_path):
    cache_model(tmp_path, "lft-test/tiny-distilbert", tiny_model_dir)
    out = run_python(CHECK_AND_LOAD, HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("DistilBertForSequenceClassification 32 [2, ")


def test_an_uncached_model_offline_fails_fast_with_the_advice(tmp_path):
    start = time.monotonic()
    code = 'from lft_helpers.hub import require_hub; require_hub("model", "lft-test/tiny")'
    out = run_python(code, HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    assert time.monotonic() - start < 20
    assert out.returncode != 0
    assert "HubUnavailableError" in out.stderr and "`lft-test/tiny`" in out.stderr
    assert "not in the local Hugging Face cache" in out.stderr and "LFT_MODEL" in out.stderr


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    return tmp_path


def test_a_prepared_dataset_in_the_datasets_cache_is_accepted_offline(datasets_cache):
    (datasets_cache / "stanfordnlp___imdb" / "plain_text" / "0.0.0" / REVISION[:16]).mkdir(
        parents=True
    )
    require_hub("dataset", "stanfordnlp/imdb")  # no error
    with pytest.raises(HubUnavailableError, match="`stanfordnlp/other`"):
        require_hub("dataset", "stanfordnlp/other")


def test_an_empty_dataset_folder_does_not_count_as_cached(datasets_cache):
    (datasets_cache / "stanfordnlp___imdb").mkdir()  # an interrupted download leaves this
    with pytest.raises(HubUnavailableError, match="LFT_DATA"):
        require_hub("dataset", "stanfordnlp/imdb")


class RecordingProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy that writes down each request line and answers it with `status`."""

    daemon_threads = True

    def __init__(self, status: str):
        self.status, self.requests = status, []
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self):
        self.server.requests.append(self.rfile.readline().decode().strip())
        while self.rfile.readline().strip():  # the rest of the headers
            pass
        self.wfile.write(f"HTTP/1.1 {self.server.status}\r\nContent-Length: 0\r\n\r\n".encode())


@pytest.fixture
def proxy(request):
    server = RecordingProxy(request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


REACHABLE = "from lft_helpers.hub import hub_reachable; print(hub_reachable(timeout=5))"


@pytest.mark.parametrize("proxy", ["200 OK"], indirect=True)
def test_a_hub_reachable_only_through_a_proxy_counts_as_reachable(proxy):
    # The endpoint's name cannot resolve: only the proxy can answer for it.
    out = run_python(REACHABLE, HF_ENDPOINT=f"http://{UNRESOLVABLE}", HTTP_PROXY=proxy.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    assert proxy.requests == [f"HEAD http://{UNRESOLVABLE}/ HTTP/1.1"]


@pytest.mark.parametrize("proxy", ["502 Bad Gateway"], indirect=True)
def test_https_goes_through_https_proxy_and_a_refusal_means_unreachable(proxy):
    out = run_python(REACHABLE, HF_ENDPOINT=f"https://{UNRESOLVABLE}", HTTPS_PROXY=proxy.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert proxy.requests == [f"CONNECT {UNRESOLVABLE}:443 HTTP/1.1"]


def test_a_proxy_that_is_down_fails_within_seconds():
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as closed:
        port = closed.server_address[1]  # bound, then closed on exit: nothing listens there
    start = time.monotonic()
    out = run_python(REACHABLE, HTTPS_PROXY=f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 20
    assert out.stdout.strip() == "False", out.stderr
