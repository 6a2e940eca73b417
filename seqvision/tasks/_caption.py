"""Captioning: a sentence per clip."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.vocab import Vocabulary
from ..errors import DatasetError
from ..metrics import caption_scores
from ..models import ModelOutput
from ..probes import caption_retrieval
from ._base import DecodeOptions, Labels, MetricAccumulator, Task, register_task, window_clip

__all__ = ["CaptionTask", "CaptionAccumulator"]


class CaptionAccumulator(MetricAccumulator):
    """Generated and reference captions by clip id -> :func:`seqvision.metrics.caption_scores` (BLEU-1..4,
    ROUGE-L, CIDEr-D; METEOR only when ``meteor``, a Java process that takes seconds to start)."""

    def __init__(self, *, meteor: bool):
        self.meteor = meteor
        self.candidates: dict[str, str] = {}
        self.references: dict[str, list[str]] = {}

    def update(self, batch: dict, out: ModelOutput) -> None:
        for vid, text, refs in zip(batch["id"], out.texts, batch["captions"]):
            self.candidates[str(vid)] = text
            self.references[str(vid)] = list(refs)

    def state(self) -> Any:
        return (self.candidates, self.references)

    def merge(self, states: list[Any]) -> None:
        self.candidates, self.references = {}, {}
        for cands, refs in states:
            self.candidates.update(cands)
            self.references.update(refs)

    def compute(self) -> dict[str, Any]:
        if not self.candidates:
            return {}
        scores = caption_scores(self.references, self.candidates, meteor=self.meteor)
        return {k: float(v) for k, v in scores.items()}


@register_task
class CaptionTask(Task):
    """Sequence to sequence: a caption per clip (``model.task=caption``); selects on validation CIDEr.

    Training passes every reference caption of a clip, shuffled by a seeded, checkpointed generator, and the
    captioner trains on up to its ``references_per_clip`` of them per step (all (clip, caption) pairs, not one
    drawn caption: on a small set one draw per step left the decoder under-trained, issue #14); the validation
    loss uses the first reference; predictions decode with :class:`DecodeOptions`.
    """

    name = "caption"
    default_metric = "CIDEr"
    online = "window"
    export_form = "encoder_decoder"
    baseline_target = "captions"
    baseline_kind = "nearest-neighbour captions"

    @classmethod
    def labels_from_index(cls, index, train_records: list, model_cfg) -> Labels:
        captions = [c for r in train_records for c in r.captions]
        if not captions:
            raise DatasetError("data.split: the training split has no captions to train a captioner on")
        vocab = Vocabulary.build(captions, min_freq=model_cfg.vocab_min_freq, max_size=model_cfg.vocab_max_size)
        return Labels(list(index.label_names), list(index.frame_label_names), vocab)

    @property
    def num_outputs(self) -> int:
        return len(self.labels.vocab) if self.labels.vocab is not None else 0

    def training_batch(self, batch: dict, *, generator: torch.Generator | None = None) -> dict:
        captions = batch.get("captions")
        if captions is None:
            return batch
        picked = []
        for i, refs in enumerate(captions):
            if isinstance(refs, str):
                picked.append(refs)
            elif generator is None:
                picked.append(refs[0] if refs else "")
            elif not refs:
                raise DatasetError(f"{batch['path'][i] if 'path' in batch else i}: training clip has no caption")
            else:  # every reference, in a seeded random order (the model trains on its first few)
                picked.append([refs[int(k)] for k in torch.randperm(len(refs), generator=generator)])
        return {**batch, "captions": picked, "references": captions}

    def predict(self, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                decode: DecodeOptions = DecodeOptions()) -> ModelOutput:
        return model.predict(x, lengths, beam_size=decode.beam_size, max_len=decode.max_len,
                             length_penalty=decode.length_penalty)

    def metrics(self, *, full: bool = False, meteor: bool = False) -> CaptionAccumulator:
        return CaptionAccumulator(meteor=full and meteor)

    def record(self, batch: dict, i: int, out: ModelOutput, *, truth: bool = False, top_k: int = 5) -> dict:
        rec: dict[str, Any] = {**self.record_head(batch, i, truth=truth), "caption": out.texts[i]}
        if truth:
            rec["references"] = list(batch["captions"][i])
        else:
            rec["score"] = float(out.scores[i]) if out.scores is not None else None
        return rec

    def online_window(self, cfg) -> int | None:
        """Two training clips' worth of frames (``2 * data.num_frames``)."""
        return 2 * cfg.data.num_frames

    def window_output(self, model, feats, cfg, *, top_k=5, beam_size=1) -> dict:
        """``{"caption": str}`` of ``data.num_frames`` picked uniformly from the window."""
        clip, lengths = window_clip(feats, cfg)
        return {"caption": model.predict(clip, lengths, beam_size=beam_size)["texts"][0]}

    def baseline(self, train_clips, train_rest, val_clips, val_rest, *, num_classes, seed):
        """Nearest-neighbour caption retrieval (:func:`seqvision.probes.caption_retrieval`); the extra results
        are ``{"caption_scores": {...}}``."""
        probes, scores = caption_retrieval(train_clips, train_rest, val_clips, val_rest, seed)
        return probes, {"caption_scores": scores}
