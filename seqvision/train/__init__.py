"""seqvision.train: the trainer, safe checkpoints, evaluation and distributed (DDP) helpers.

Example:
    >>> from seqvision.config import load_config
    >>> from seqvision.train import train, evaluate, load_model
    >>> result = train(load_config("configs/synthetic_classify.yaml"))
    >>> report = evaluate(result.best_checkpoint, split="test")
    >>> print(report["table"])

Modules: ``_trainer`` (the loop), ``_data`` (config -> TrainData), ``_optim`` (optimiser, schedule, scaler),
``_run`` (run directory, logs, TensorBoard, plots), ``_hooks`` (prepare_model / baseline_metrics),
``_checkpoint`` (the Checkpoint file), ``_inference`` (load_model), ``_evaluate`` (seqvision eval).
"""

from . import distributed
from ._checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    Checkpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from ._evaluate import evaluate
from ._data import TrainData, build_train_data
from ._inference import LoadedModel, load_model
from ._trainer import Trainer, TrainingError, TrainResult, train
from ..runtime import seed_everything

__all__ = [
    "train",
    "Trainer",
    "TrainData",
    "build_train_data",
    "Checkpoint",
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
