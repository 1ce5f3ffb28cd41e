"""What several bench scripts share (constants of the real cohorts); science helpers live in ``blue_core``
(e.g. ``blue_core.analysis.stats.collapse_columns``). Scripts import this, never each other's internals."""

from __future__ import annotations

#: Hoek (GSE64655) flow groups: model types -> group, and truth columns -> group.
HOEK_MODEL = {"B": "B", "Plasma cell": "B", "CD4 T": "T", "CD8 T": "T", "NK": "NK", "Monocyte": "Monocyte", "mDC": "mDC"}
HOEK_TRUTH = {"Bcells": "B", "Tcells": "T", "NKcells": "NK", "Monocytes": "Monocyte", "MyeloidDC": "mDC"}
