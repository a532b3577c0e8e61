import os
import socket
import sys
import threading
from pathlib import Path

import pytest

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The public Spec-Bench question file lives beside the checkout for tests and benchmarks.
SHARED_QUESTIONS = ROOT.parent / "shared" / "spec_bench" / "question.jsonl"

# Tiny test models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's
# spinning threads make each small matmul ~100x slower. One thread keeps the suite fast.
import torch  # noqa: E402

torch.set_num_threads(1)

from methods.core.backends import BACKENDS  # noqa: E402  (after the path set-up above)


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"postgresql://user:secret@127.0.0.1:{server.getsockname()[1]}/results"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


# ---- results databases: SQLite and a PostgreSQL server started for the session -------------

@pytest.fixture(scope="session")
def postgresql_server():
    """A PostgreSQL server in a temporary folder. Without server binaries the PostgreSQL
    variants are skipped, except under CI (CI=true), where .ci/run installs them: a skip there
    would hide a backend that is supposed to be tested."""
    from tests.postgres_server import PostgresServer, ServerUnavailable

    try:
        server = PostgresServer().start()
    except ServerUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgresql_url(postgresql_server):
    """A fresh, empty PostgreSQL database for one test."""
    url = postgresql_server.create_database()
    yield url
    # Sessions a test left open are finalised now, not by a later garbage collection in the
    # middle of an import (Python 3.11 before 3.11.8 then fails with "AST constructor recursion
    # depth mismatch"); then the database goes.
    import gc

    gc.collect()
    postgresql_server.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request, tmp_path):
    """A URL of a fresh results database, once on each backend the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return request.getfixturevalue("postgresql_url")


# The tiny model and engine that the drafter tests share. A test module that needs another model
# (more layers, float32) defines its own `model` fixture; `engine` then runs that one.
@pytest.fixture(scope="module")
def model():
    from tests.tiny_model import make_tiny_llama

    return make_tiny_llama(vocab_size=97, seed=0)


@pytest.fixture(scope="module", params=BACKENDS)
def engine(model, request):
    """A SpeculativeEngine on ``model``, once per backend."""
    from methods.core.engine import SpeculativeEngine

    return SpeculativeEngine(model, backend=request.param)
