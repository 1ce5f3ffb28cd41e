"""Errors and warnings raised by BLUE studio.

``BlueInputError`` is for input that cannot be used; its message names the problem
and the fix. Warning classes are for input that is usable but dubious (log-scale
values converted back, partial gene overlap, ...): the computation goes on and the
warning tells the user what was assumed.
"""

from __future__ import annotations

__all__ = [
    "BlueInputError",
    "BlueModelError",
    "BlueWarning",
    "LogScaleInputWarning",
    "GeneOverlapWarning",
    "PoorFitWarning",
]


class BlueInputError(ValueError):
    """Input data that BLUE cannot use. The message says what is wrong and how to fix it."""


class BlueModelError(RuntimeError):
    """A model file that cannot be loaded (missing, corrupted, wrong format version, gene-order mismatch)."""


class BlueWarning(UserWarning):
    """Base class of BLUE's warnings about usable-but-dubious input."""


class LogScaleInputWarning(BlueWarning):
    """Input looked log-transformed and was converted back to linear scale (2**x - 1 or exp(x) - 1)."""


class GeneOverlapWarning(BlueWarning):
    """Only part of the model's genes were found in the input; missing genes are filled with zeros."""


class PoorFitWarning(BlueWarning):
    """Some samples are poorly explained by the model (low fit score): their estimates deserve caution."""
