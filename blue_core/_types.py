"""Types and small numeric rules shared by the engine's modules (one home each)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["Progress", "log1p_cpm"]

#: Progress callback: ``progress(fraction done in [0, 1], short message)``; the CLI wraps it in tqdm, the app
#: in ``st.progress``.
Progress = Callable[[float, str], None]


def log1p_cpm(values: np.ndarray) -> np.ndarray:
    """``log1p`` of counts per million along the last axis (rows with no counts stay 0).

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``, float64.
    """
    x = np.asarray(values, dtype=np.float64)
    total = x.sum(axis=-1, keepdims=True)
    return np.log1p(np.divide(x * 1e6, total, out=np.zeros_like(x), where=total > 0))
