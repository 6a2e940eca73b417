"""seqvision.train: the trainer, safe checkpoints, evaluation and distributed (DDP) helpers.

Example:
    >>> from seqvision.config import load_config
    >>> from seqvision.train import train, evaluate, load_model
    >>> result = train(load_config("configs/synthetic_classify.yaml"))
    >>> report = evaluate(result.best_checkpoint, split="test")
    >>> print(report["table"])
"""

from . import distributed
from ._checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from ._evaluate import evaluate
from ._inference import LoadedModel, load_model
from ._trainer import Trainer, TrainingError, TrainResult, train
from ..runtime import seed_everything

__all__ = [
    "train",
    "Trainer",
    "TrainResult",
    "TrainingError",
    "evaluate",
    "load_model",
    "LoadedModel",
    "load_checkpoint",
    "save_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "seed_everything",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "distributed",
]
