import os
import sys
from pathlib import Path

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
