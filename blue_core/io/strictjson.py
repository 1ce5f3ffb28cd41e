"""Strict JSON: the one place that turns results into JSON (NaN and infinities become ``null``).

Model cards, survival summaries and analysis manifests must parse with any strict JSON parser.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["jsonable", "dumps"]


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python values, paths as strings, NaN/inf as None.

    Returns
    -------
    object
        Dicts (string keys), lists, str, int, float, bool or None.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(value: Any, *, indent: int | None = 1) -> str:
    """Strict JSON text of ``value`` (:func:`jsonable` first; ``allow_nan=False`` as a guard).

    Returns
    -------
    str
        The JSON text.
    """
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)
