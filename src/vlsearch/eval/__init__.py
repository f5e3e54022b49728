"""Retrieval evaluation on the production path: ViDoRe, JinaVDR, MMEB-V2 and MTEB tasks.

Example:
    >>> from vlsearch.eval import EvalOptions, run_eval
    >>> options = EvalOptions(Path("eval-out"), reranker="Qwen/Qwen3-VL-Reranker-2B")
    >>> run_eval(["vidore1-docvqa"], options)  # doctest: +SKIP
"""

from __future__ import annotations

from .datasets import RetrievalTask, load_beir_dir, load_folder
from .loader import load_task
from .metrics import DEFAULT_METRICS, evaluate, per_query, ranked
from .registry import AGGREGATES, TASKS, TaskSpec
from .runner import EvalOptions, Setting, run_eval

__all__ = ["RetrievalTask", "load_beir_dir", "load_folder", "load_task", "DEFAULT_METRICS", "evaluate", "per_query",
           "ranked", "AGGREGATES", "TASKS", "TaskSpec", "EvalOptions", "Setting", "run_eval"]
