"""Fine-tuning: adapt the embedder and the reranker to a collection with LoRA, and measure the gain.

Example:
    >>> from vlsearch.tune import TuneOptions, from_task, tune
    >>> result = tune(from_task("my-task-dir"), TuneOptions(Path("tuned"), evaluate=True))  # doctest: +SKIP
    >>> Embedder("Qwen/Qwen3-VL-Embedding-2B", adapter=result.adapters["embedder"])  # doctest: +SKIP
"""

from __future__ import annotations

from ..models.adapters import merge_checkpoint
from .data import TrainingData, from_collection, from_pairs, from_task
from .loop import TrainOptions
from .run import TuneOptions, TuneResult, tune

__all__ = ["TrainingData", "from_collection", "from_pairs", "from_task", "TrainOptions", "TuneOptions", "TuneResult",
           "tune", "merge_checkpoint"]
