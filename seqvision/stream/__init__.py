"""seqvision.stream: online inference. A checkpoint run frame by frame with carried state on live sources
(files, files still being written, network streams, capture devices), long videos labelled window by window.

Example:
    >>> from seqvision.stream import OnlinePredictor
    >>> pred = OnlinePredictor.from_checkpoint("runs/exp/best.pt")
    >>> pred.step(frame)["label"]
"""

from ._online import NotStreamableError, OnlinePredictor, check_streamable, frame_size
from ._run import StreamSummary, plot_timeline, run_stream
from ._source import FrameSource, SourceFrame
from ._window import WindowLabels, collect_windows, label_windows

__all__ = ["OnlinePredictor", "NotStreamableError", "check_streamable", "frame_size", "FrameSource", "SourceFrame",
           "run_stream", "StreamSummary", "plot_timeline", "label_windows", "collect_windows", "WindowLabels"]
