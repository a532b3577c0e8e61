"""What a measurement was taken on, recorded with every answer so runs are never mixed up."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: torch.device, dtype: torch.dtype) -> dict:
    """The part of the environment known before a model is loaded."""
    import transformers

    on_cuda = device.type == "cuda"
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if on_cuda else cpu_name(),
        "num_threads": torch.get_num_threads(),
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda if on_cuda else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def describe_environment(device: torch.device, dtype: torch.dtype, model, model_path: str) -> dict:
    return describe_device(device, dtype) | {
        "model_path": model_path,
        "attention": getattr(model.config, "_attn_implementation", None),
    }
