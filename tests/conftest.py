"""Shared fixtures: all vectune state in a temp dir, a tiny real corpus, CLI helpers.

Tests use the real CLI (click's runner, in-process), the real bundled MiniLM and a
real embedded Qdrant. Set QDRANT_URL to run the same tests against a server.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers.cli import invoke
from tests.helpers.fake_openai import FakeOpenAI

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Small and fast: a real model, tiny data, one short epoch.
FAST = {
    "VECTUNE_MAX_SEQ_LENGTH": "96",
    "VECTUNE_QUERIES_PER_CHUNK": "1",
    "VECTUNE_BATCH_SIZE": "8",
    "VECTUNE_EPOCHS": "1",
    "VECTUNE_MIN_TRAIN_CHUNKS": "10",
    "VECTUNE_BOOTSTRAP_SAMPLES": "200",
    "VECTUNE_LOG_FORMAT": "text",
    "VECTUNE_LOG_LEVEL": "WARNING",
    # The end-to-end tests written for both towers keep testing full mode; query/auto mode have their own.
    "VECTUNE_MODE": "full",
    "VECTUNE_QUERY_EPOCHS": "1",
    "VECTUNE_QUERY_REFIT": "false",
    "VECTUNE_LINEAR_EPOCHS": "5",
}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Every test: all vectune state in a temp dir, no stray environment or .env, fast training settings."""
    h = tmp_path / "vectune-home"
    monkeypatch.setenv("VECTUNE_HOME", str(h))
    for k in [k for k in os.environ if k.startswith("VECTUNE_") and k != "VECTUNE_HOME"]:
        monkeypatch.delenv(k, raising=False)
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    if os.environ.get("QDRANT_URL"):
        # against a shared server, keep aliases of different tests apart
        monkeypatch.setenv("VECTUNE_TEST_PREFIX", tmp_path.name)
    return h


@pytest.fixture(scope="session")
def corpus_records():
    """40 real passages (CPython reference topics), spread over many topics."""
    from vectune.demo.corpus import demo_chunks

    chunks = [c for c in demo_chunks() if 200 <= len(c["text"]) <= 700]
    step = max(1, len(chunks) // 40)
    return chunks[::step][:40]


@pytest.fixture
def corpus_file(tmp_path, corpus_records):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in corpus_records))
    return path


@pytest.fixture(scope="session")
def indexed_template(tmp_path_factory, corpus_records):
    """The tiny corpus indexed once per session behind alias 'docs' (an embedded store to copy)."""
    base = tmp_path_factory.mktemp("indexed-template")
    corpus = base / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in corpus_records))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VECTUNE_HOME", str(base / "home"))
        for k in [k for k in os.environ if k.startswith("VECTUNE_") and k != "VECTUNE_HOME"]:
            mp.delenv(k, raising=False)
        for k, v in FAST.items():
            mp.setenv(k, v)
        mp.chdir(base)
        invoke("index", corpus, "--alias", "docs")
    return base / "home"


@pytest.fixture
def indexed(home, corpus_file, request):
    """The tiny corpus indexed behind alias 'docs': a copy of the session's indexed store (embedded Qdrant),
    or a real ``vectune index`` against a server."""
    import shutil

    if os.environ.get("QDRANT_URL"):
        invoke("index", corpus_file, "--alias", "docs")
    else:
        shutil.copytree(request.getfixturevalue("indexed_template"), home, dirs_exist_ok=True)
    return "docs"




# ---- unit-test fixtures: settings and an embedded Qdrant store in the temp home ------------------------


@pytest.fixture
def settings(home):
    """Settings as the CLI would load them, all state under the temp home."""
    from vectune.config.settings import load_settings

    return load_settings()


@pytest.fixture
def store(settings):
    """A real embedded Qdrant (on disk, in the temp home); closed after the test."""
    from vectune.qdrant.store import Store

    s = Store.open(settings)
    yield s
    s.close()


@pytest.fixture(scope="session")
def bundled_encoder():
    """The bundled MiniLM, loaded once per session (read-only use: do not train it)."""
    from vectune.config.settings import Settings
    from vectune.models.store import ModelStore

    return ModelStore.from_settings(Settings(max_seq_length=96)).load("bundled:all-MiniLM-L6-v2")


@pytest.fixture
def server():
    """The fake OpenAI-compatible server (tests/helpers/fake_openai.py) on a loopback port."""
    srv = FakeOpenAI().start()
    yield srv
    srv.stop()


@pytest.fixture
def memory_store():
    """A throwaway in-memory Qdrant (qdrant-client's embedded mode), closed afterwards."""
    from vectune.config.settings import Settings
    from vectune.qdrant.store import Store

    s = Store.open(Settings(qdrant_path=":memory:"))
    yield s
    s.close()
