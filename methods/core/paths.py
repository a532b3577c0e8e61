"""Where the project's files are: the checkout's folders and the cache of built things.

Every module that needs a path of the repository or of the cache takes it from here, so that a
moved folder is one edit.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"  # question sets (data/<bench>/question.jsonl) and their answers
SHIPPED_DRAFTERS = DATA_DIR / "drafters"  # trained drafters that ship with the project, per model
# The bundled corpus REST's datastore, SAM-Decoding's static automaton and the trainers read.
BUNDLED_CORPUS = DATA_DIR / "corpus" / "smollm2_corpus.jsonl.gz"


def cache_root() -> Path:
    """Where converted models, compiled kernels, datastores and features are kept between runs
    ($SDBENCH_CACHE, else ~/.cache/sdbench)."""
    return Path(os.environ.get("SDBENCH_CACHE", Path.home() / ".cache" / "sdbench"))
