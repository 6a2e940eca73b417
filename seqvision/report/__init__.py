"""seqvision.report: PNG plots (matplotlib, Agg, no pyplot state) and a self-contained HTML report.

Every plot function takes plain arrays (numpy or torch) and an output ``.png`` path and returns the path.
"""

from ._html import write_html_report
from ._plots import (
    frame_strip,
    plot_attention,
    plot_bars,
    plot_confusion_matrix,
    plot_gates,
    plot_lines,
    plot_training_curves,
)

__all__ = [
    "plot_confusion_matrix",
    "plot_training_curves",
    "plot_gates",
    "plot_attention",
    "frame_strip",
    "plot_lines",
    "plot_bars",
    "write_html_report",
]
