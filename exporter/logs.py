"""Console hygiene shared by the CLI, the benchmark workers and the benchmark scripts."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Keep third-party start-up chatter (optional CUDA kernels, deprecation notices) off the console."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("torchao", "torch.utils._pytree", "torch._dynamo", "executorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Environment switches rather than imports: importing transformers costs seconds, and bad input
    # should be reported before that.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TORCH_LOGS", "-all")
