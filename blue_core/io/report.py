"""The input report: what a reader found and changed, in codes (``uns["blue_input"]``) and in plain words."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["REPORT_WORDS", "report_words", "input_report_lines"]

#: Plain words for the input report's codes (the app's tiles; ``uns["blue_input"]`` keeps the codes).
REPORT_WORDS: dict[str, dict[str, str]] = {
    "units": {"counts": "raw counts", "relative": "TPM / CPM", "log_converted": "log, converted"},
    "gene_id_type": {"symbol": "gene symbols", "ensembl": "Ensembl IDs", "ensembl_versioned": "Ensembl IDs",
                     "mixed": "mixed IDs"},
    "orientation": {"genes_x_samples": "genes in rows", "samples_x_genes": "samples in rows"},
}


def report_words(field: str, code: object) -> str:
    """The plain words for an input-report code (e.g. ``units="relative"`` -> ``"TPM / CPM"``).

    Returns
    -------
    str
        The words, or the code itself when it has none.
    """
    return REPORT_WORDS.get(field, {}).get(str(code), str(code))


def input_report_lines(report: dict[str, Any], *, seen: Sequence[str] = ()) -> list[str]:
    """The input report of :func:`read_bulk` as short lines: a summary, then every change and warning.

    The one text of the report: the app shows these lines and ``blue deconvolve`` prints them, so a
    user sees the same account (duplicates summed, symbols renamed, units converted, ...) either way.

    Parameters
    ----------
    report
        ``bulk.uns["blue_input"]``.
    seen
        Texts of warnings raised while reading or deconvolving; merged with ``report["warnings"]``
        (each text once, in order).

    Returns
    -------
    list of str
        ``[summary, *messages]``.
    """
    parts = [
        f"{report.get('source', 'input')}: {int(report.get('n_samples', 0)):,} samples x "
        f"{int(report.get('n_genes', 0)):,} genes",
        str(report.get("orientation", "")).replace("_", " "),
        f"units {report.get('units', '?')}",
        f"gene IDs {report.get('gene_id_type', '?')}",
    ]
    if report.get("n_model_genes"):
        parts.append(f"{int(report.get('n_model_genes_matched', 0)):,} of {int(report['n_model_genes']):,} model genes found")
    messages: list[str] = []
    for text in [*map(str, seen), *map(str, report.get("warnings") or [])]:
        if text not in messages:
            messages.append(text)
    from ..engine.adaptation import adaptation_text

    adapted = adaptation_text(report.get("adaptation"))
    if adapted:
        messages.append(adapted)
    return ["; ".join(p for p in parts if p)] + messages
