"""The gene-overlap rule: which of a model's input genes a bulk measures, and what is wrong when too few are.

:meth:`~blue_core.engine.model.BlueModel.check_genes` decides with it (the one rule ``deconvolve``, streaming,
the CLI and the app use); this module holds the thresholds, the match and the hint a refusal gives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MIN_GENE_FRACTION", "WARN_GENE_FRACTION", "GeneMatch", "gene_hint"]


#: Below this fraction of the model's input genes (or of its matched panel) found in the bulk, deconvolution is refused.
MIN_GENE_FRACTION = 0.5


#: Below this fraction a GeneOverlapWarning is emitted.
WARN_GENE_FRACTION = 0.9


_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}")


_ID_KINDS = {"ensembl_versioned": "Ensembl IDs with versions", "ensembl": "Ensembl IDs", "symbol": "gene symbols",
             "mixed": "a mix of Ensembl IDs and symbols"}


def gene_hint(bulk_genes: "Sequence[str]", report: "Mapping[str, Any] | None" = None) -> str:
    """What is probably wrong with a bulk's gene names, in one clause (``report``: ``read_bulk``'s input report,
    which knows the file's own identifiers).

    Returns
    -------
    str
        A clause for a refusal message (no final full stop).
    """
    if report and report.get("gene_id_type") in _ID_KINDS:
        examples = [str(g) for g in report.get("gene_id_examples") or []]
        kind = _ID_KINDS[report["gene_id_type"]]
        if examples and np.mean([g.isdigit() for g in examples]) > 0.5:
            kind = "numeric IDs (Entrez gene IDs?)"
        converted = report.get("n_ensembl_mapped") or 0
        converted_words = f", {converted:,} of them converted to symbols" if converted else ""
        return (f"the file's genes look like {kind} (e.g. {', '.join(examples)}{converted_words}; the bulk has "
                f"{int(report.get('n_genes', len(bulk_genes))):,} genes). Use human gene symbols or Ensembl gene IDs, "
                "check that this is the right model for the tissue, and that the file covers the whole transcriptome "
                "rather than a small gene panel")
    sample = [str(g) for g in list(bulk_genes)[:2000]]
    if not sample:
        return "the bulk has no genes"
    if np.mean([bool(_ENSEMBL.match(g)) for g in sample]) > 0.5:
        return ("the bulk genes look like Ensembl IDs; read the file with blue_core.read_bulk (or `blue deconvolve "
                "FILE`), which maps them to HGNC symbols")
    if np.mean([g[:1].isupper() and g[1:].islower() and len(g) > 2 for g in sample]) > 0.5:
        return "the bulk genes look like mouse symbols (e.g. 'Cd74'); BLUE's models are human: use human gene symbols"
    return "check that the bulk's genes are HGNC symbols for the same tissue as the model, or pick another model"


@dataclass(frozen=True)
class GeneMatch:
    """How a bulk's genes cover a model's input genes (the one overlap rule; see :meth:`BlueModel.match_genes`).

    Attributes
    ----------
    present
        ``(G_in,)`` bool: input genes the bulk measures (within the matched panel for a multi-panel model).
    n_matched, n_expected
        Genes found and genes the model (or its matched panel) reads.
    panel
        Name of the matched input panel, or None for a single-panel model.
    """

    present: np.ndarray
    n_matched: int
    n_expected: int
    panel: str | None

    @property
    def fraction(self) -> float:
        """``n_matched / n_expected`` (0 when nothing is expected)."""
        return self.n_matched / self.n_expected if self.n_expected else 0.0
