"""Units of an expression matrix: finite values, and log-scale input converted back to linear.

The one home of the log-scale decision (:func:`convert_units`, :data:`LOG_BASES`), shared by the bulk reader and
the streaming path.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import BlueInputError

__all__ = ["LOG_MAX", "LOG_BASES", "convert_units", "check_finite"]

#: Largest value a log-scale matrix can hold (larger values are linear).
LOG_MAX = 50.0


# --------------------------------------------------------------------------------------- units
_LOG10_AUTO_MAX = 7.0


LOG_BASES = {"2": (2.0, "log2", "2**x"), "10": (10.0, "log10", "10**x"), "e": (np.e, "natural-log", "exp(x)")}


def convert_units(values: np.ndarray, name: str, *, log_base: str = "auto") -> tuple[np.ndarray, str, str | None]:
    """The one units rule: log-scale values back to linear, or refused when they cannot be expression.

    Parameters
    ----------
    values
        ``(n_samples, n_genes)`` as read.
    name
        How messages name the file.
    log_base
        ``"auto"`` (log2, or log10 when the largest value is below 7) or a declared base.

    Returns
    -------
    tuple
        ``(linear values, units, warning text or None)``; units ``"counts"``, ``"relative"`` or ``"log_converted"``.
    """
    if log_base not in ("auto", *LOG_BASES):
        raise BlueInputError(f"log_base must be 'auto', '2', '10' or 'e', not {log_base!r}.")
    vmin, vmax = float(values.min()), float(values.max())
    integer = bool(np.all(np.abs(values - np.round(values)) < 1e-8))
    if vmin < 0:
        n_floor = int(np.isclose(values, vmin, rtol=0, atol=1e-9).sum())
        floor_frac = n_floor / values.size
        neg_frac = float(np.mean(values < 0))
        has_floor = n_floor >= 2 and floor_frac >= 0.001
        if vmax <= LOG_MAX and (has_floor or neg_frac < 0.3):
            base, word, inverse = LOG_BASES["2" if log_base == "auto" else log_base]
            linear = np.power(base, values)
            floor_note = ""
            if has_floor:
                linear[np.isclose(values, vmin, rtol=0, atol=1e-9)] = 0.0
                floor_note = f" The repeated floor {vmin:.4g} ({floor_frac:.1%} of values) marks zero counts and was set to 0."
            msg = (
                f"{name}: values look {word}-scale with negative values (min {vmin:.3g}, max {vmax:.3g}), "
                f"e.g. {word} CPM; converted back to linear with {inverse}.{floor_note} If this is wrong, "
                "set the log base (log_base= / --log-base) or provide raw counts or TPM."
            )
            return linear, "log_converted", msg
        raise BlueInputError(
            f"{name} contains negative values (min {vmin:.4g}; {neg_frac:.0%} of values are negative) and does not look "
            "like log-scale expression. BLUE needs non-negative raw counts or TPM/CPM; centred, scaled (z-score) or "
            "log-ratio (two-colour microarray) data cannot be deconvolved. Export unnormalised counts or TPM."
        )
    if vmax <= LOG_MAX and not integer:
        key = log_base if log_base != "auto" else ("10" if vmax < _LOG10_AUTO_MAX else "2")
        base, word, inverse = LOG_BASES[key]
        why = (f" (read as log10 because the largest value, {vmax:.3g}, would be only {2 ** vmax:.0f} as log2 -- no "
               "RNA-seq sample tops out that low)" if log_base == "auto" and key == "10" else "")
        msg = (
            f"{name}: values look log-transformed (all between {vmin:.3g} and {vmax:.3g}, not integers); assumed "
            f"{word}(x + 1){why} and converted back with {inverse} - 1. If this is wrong, set the log base "
            "(log_base= / --log-base 2|10|e) or provide raw counts or TPM."
        )
        return np.power(base, values) - 1.0, "log_converted", msg
    return values, "counts" if integer else "relative", None


def check_finite(matrix: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite values with counts and the fix (the one home of that rule; streaming uses it too)."""
    bad = ~np.isfinite(matrix)
    if bad.any():
        n_nan, n_inf = int(np.isnan(matrix).sum()), int(np.isinf(matrix).sum())
        raise BlueInputError(
            f"{name} has {n_nan} missing (NaN/empty) and {n_inf} infinite values. BLUE needs a complete matrix: "
            "fill missing expression with 0 (not detected) or remove the affected genes/samples."
        )
