"""Gene identifier harmonization: Ensembl IDs and old symbols -> current HGNC symbols.

BLUE's models and references are indexed by current human gene symbols (GENCODE v48 names).
This module maps whatever identifiers a user file carries onto that space:

1. **Ensembl IDs** (``ENSG00000141510`` or versioned ``ENSG00000141510.16``): the version suffix is
   stripped and the ID is looked up in ``data/genes/human_ensembl_to_symbol.tsv.gz``. IDs without an
   approved symbol keep their (unversioned) Ensembl ID as name; so do IDs whose name is an RNA-family
   label shared by more than 5 genes (``Y_RNA``, ``Metazoa_SRP``, ``U6``, ...), which would otherwise
   be summed into one meaningless feature.
2. **PAR-Y copies**: GENCODE <= v24 (e.g. v22, used by GDC/TCGA) gives the Y copy of each
   pseudo-autosomal gene an ``ENSGR...`` ID, later releases a ``..._PAR_Y`` suffix. Reads in the
   PAR are assigned to the X copy, so these rows are all-zero duplicates: they are **dropped**
   (counted in ``n_par_y_dropped``) instead of being summed into the X copy.
3. **Symbols**: an approved symbol is kept as is. Otherwise an alias or previous symbol
   (``data/genes/human_alias_to_symbol.tsv.gz``, NCBI 2020) is used only when it names exactly one
   gene and that gene's symbol is not already present in the input (e.g. TCGA's ``BAI1 -> ADGRB1``,
   ``SDPR -> CAVIN2``). Anything else keeps its name and counts as unmapped.
4. **Mouse symbols** (``Cd4``, ``Ins1``) are recognised by their capitalisation and confirmed with
   the ortholog table; :func:`check_not_mouse` raises :class:`BlueInputError` for them.

Rows that end up with the same symbol are summed (:func:`sum_duplicate_genes`).
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import BlueInputError
from .resources import package_data

__all__ = [
    "GeneIdType",
    "GeneMapping",
    "strip_version",
    "detect_id_type",
    "gene_like_fraction",
    "looks_like_mouse",
    "check_not_mouse",
    "map_gene_ids",
    "harmonize_gene_ids",
    "sum_duplicate_genes",
    "harmonize_var_names",
]

logger = logging.getLogger(__name__)

GeneIdType = Literal["symbol", "ensembl", "ensembl_versioned", "mixed"]

_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?(_PAR_Y)?$")
_ENSEMBL_VERSIONED_RE = re.compile(r"^ENS[A-Z]*G\d{11}\.\d+(_PAR_Y)?$")
_PAR_Y_RE = re.compile(r"^ENSGR\d{10}(\.\d+)?$|_PAR_Y$")
_NON_HUMAN_ENSEMBL_RE = re.compile(r"^ENS(?!G\d)(?!GR\d)[A-Z]{3,4}G\d{11}")
_TRANSCRIPT_RE = re.compile(r"^ENS[A-Z]*T\d{11}")
# Mouse-style symbol: capital letter then lower case / digits (Cd4, Ins1, Gm12345, H2-K1 is rare) or mt-.
_MOUSE_STYLE_RE = re.compile(r"^(?:[A-Z][a-z][a-z0-9]*(?:-[A-Za-z0-9]+)*|[A-Z][0-9]+[a-z][a-z0-9]*|mt-[A-Z][a-z0-9]+)$")


def _table(name: str) -> pd.DataFrame:
    path = package_data("genes", name)
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as handle:
        return pd.read_csv(handle, sep="\t", dtype=str, keep_default_na=False)


@lru_cache(maxsize=1)
def _ensembl_to_symbol() -> dict[str, str]:
    table = _table("human_ensembl_to_symbol.tsv.gz")
    return dict(zip(table["ensembl_id"], table["symbol"]))


@lru_cache(maxsize=1)
def _family_labels() -> frozenset[str]:
    """Names shared by more than 5 Ensembl genes (Rfam families: Y_RNA, Metazoa_SRP, U6, ...)."""
    counts = pd.Series(list(_ensembl_to_symbol().values())).value_counts()
    return frozenset(counts[counts > 5].index)


@lru_cache(maxsize=1)
def _approved_symbols() -> frozenset[str]:
    symbols = {s for s in _ensembl_to_symbol().values() if not s.startswith("ENSG")}
    alias = _table("human_alias_to_symbol.tsv.gz")
    symbols.update(alias["symbol"])
    return frozenset(symbols)


@lru_cache(maxsize=1)
def _unambiguous_aliases() -> dict[str, str]:
    alias = _table("human_alias_to_symbol.tsv.gz")[["alias", "symbol"]].drop_duplicates()
    counts = alias["alias"].value_counts()
    alias = alias[alias["alias"].map(counts) == 1]
    return dict(zip(alias["alias"], alias["symbol"]))


@lru_cache(maxsize=1)
def _mouse_symbols() -> frozenset[str]:
    return frozenset(_table("human_mouse_orthologs.tsv.gz")["mouse_symbol"])


def strip_version(gene_id: str) -> str:
    """Remove an Ensembl version suffix: ``"ENSG00000141510.16"`` -> ``"ENSG00000141510"``.

    ``_PAR_Y`` suffixes are removed too; non-Ensembl identifiers are returned unchanged.

    Returns
    -------
    str
        The identifier without its version suffix.
    """
    if gene_id.startswith("ENS") and _ENSEMBL_RE.match(gene_id):
        return gene_id.split(".", 1)[0].removesuffix("_PAR_Y")
    return gene_id


def _is_ensembl(gene_id: str) -> bool:
    return gene_id.startswith("ENS") and (bool(_ENSEMBL_RE.match(gene_id)) or bool(_PAR_Y_RE.search(gene_id)))


def detect_id_type(ids: Sequence[str]) -> GeneIdType:
    """Classify identifiers as ``"symbol"``, ``"ensembl"``, ``"ensembl_versioned"`` or ``"mixed"``.

    More than 90% of one kind decides; anything in between is ``"mixed"``.

    Returns
    -------
    str
        ``"symbol"``, ``"ensembl"``, ``"ensembl_versioned"`` or ``"mixed"``.
    """
    ids = [str(i) for i in ids]
    if not ids:
        return "symbol"
    n_ens = sum(_is_ensembl(i) for i in ids)
    n_versioned = sum(bool(_ENSEMBL_VERSIONED_RE.match(i)) or i.startswith("ENSGR") for i in ids)
    frac = n_ens / len(ids)
    if frac >= 0.9:
        return "ensembl_versioned" if n_versioned >= 0.5 * n_ens else "ensembl"
    if frac <= 0.1:
        return "symbol"
    return "mixed"


def gene_like_fraction(ids: Sequence[str]) -> float:
    """Fraction of ``ids`` that look like gene identifiers.

    Counts Ensembl gene IDs, approved human symbols and mouse ortholog symbols (aliases are left
    out: short aliases such as ``S1`` collide with common sample names).
    Used to tell a gene axis from a sample axis (orientation detection).

    Returns
    -------
    float
        Fraction in [0, 1].
    """
    ids = [str(i).strip() for i in ids]
    if not ids:
        return 0.0
    approved, mouse = _approved_symbols(), _mouse_symbols()
    hits = sum(_is_ensembl(i) or i in approved or i in mouse for i in ids)
    return hits / len(ids)


def looks_like_mouse(ids: Sequence[str]) -> bool:
    """True when most symbols are mouse-style (``Cd4``) and the ortholog table confirms them.

    Rule: over 50% of the non-Ensembl identifiers are capitalised-lowercase, and of
    those, at least a fifth (and at least 3, or all if fewer) are known mouse symbols that are not
    also approved human symbols (the ortholog table covers only genes with a human ortholog, so
    ``Gm``/``Rik`` genes are not confirmed).

    Returns
    -------
    bool
        Whether the identifiers are mouse symbols.
    """
    symbols = [str(i) for i in ids if not _is_ensembl(str(i))]
    if not symbols:
        return False
    styled = [s for s in symbols if _MOUSE_STYLE_RE.match(s)]
    if len(styled) <= 0.5 * len(symbols):
        return False
    approved, mouse = _approved_symbols(), _mouse_symbols()
    confirmed = sum(s in mouse and s not in approved for s in styled)
    return confirmed >= min(3, len(styled)) and confirmed >= 0.2 * len(styled)


def check_not_mouse(ids: Sequence[str], *, what: str = "input") -> None:
    """Raise :class:`BlueInputError` for non-human or transcript-level identifiers.

    Mouse symbols (:func:`looks_like_mouse`), mostly non-human Ensembl gene IDs (``ENSMUSG...``) and
    mostly Ensembl transcript IDs (``ENST...``) are refused with a message that says how to convert.
    """
    ids = [str(i) for i in ids]
    n = max(len(ids), 1)
    non_human = [i for i in ids if _NON_HUMAN_ENSEMBL_RE.match(i)]
    if len(non_human) > 0.5 * n:
        raise BlueInputError(
            f"The {what} genes are non-human Ensembl IDs (e.g. {', '.join(non_human[:3])}). BLUE's models and "
            "references are human. Convert them to human gene symbols with an ortholog table (e.g. Ensembl "
            "BioMart homologs) and load the file again."
        )
    transcripts = [i for i in ids if _TRANSCRIPT_RE.match(i)]
    if len(transcripts) > 0.5 * n:
        raise BlueInputError(
            f"The {what} rows are Ensembl transcript IDs (e.g. {', '.join(transcripts[:3])}), not genes. Sum the "
            "transcripts of each gene first (e.g. tximport, or the gene-level output of RSEM/salmon) and load the "
            "gene-level table."
        )
    if looks_like_mouse(ids):
        examples = ", ".join([str(i) for i in ids if _MOUSE_STYLE_RE.match(str(i))][:5])
        raise BlueInputError(
            f"The {what} genes look like mouse gene symbols (e.g. {examples}). BLUE's models and "
            "references are human. Convert the genes to human symbols with an ortholog table "
            "(e.g. Ensembl BioMart human-mouse homologs: Cd4 -> CD4) and load the file again."
        )


@dataclass
class GeneMapping:
    """Result of :func:`map_gene_ids`.

    Attributes
    ----------
    symbols
        Harmonized name per input identifier, shape (n_ids,); ``None`` where the row is dropped (PAR-Y copy).
    id_type
        Identifier type found in the input.
    n_ensembl_mapped
        Ensembl IDs mapped to an approved symbol.
    n_alias_mapped
        Symbols replaced by their current symbol through an unambiguous alias.
    n_unmapped
        Identifiers kept unchanged because they are neither an approved symbol nor mappable.
    n_par_y_dropped
        PAR-Y rows (``ENSGR...`` / ``_PAR_Y``) dropped.
    alias_examples
        Up to 10 ``"OLD->NEW"`` strings for the report.
    """

    symbols: list[str | None]
    id_type: GeneIdType
    n_ensembl_mapped: int = 0
    n_alias_mapped: int = 0
    n_unmapped: int = 0
    n_par_y_dropped: int = 0
    alias_examples: list[str] = field(default_factory=list)


def map_gene_ids(ids: Sequence[str], *, fallback: Sequence[str] | None = None) -> GeneMapping:
    """Map gene identifiers to current human symbols (see module docstring for the rules).

    Parameters
    ----------
    ids
        Identifiers, shape (n_ids,): symbols, Ensembl IDs (with or without version) or a mix.
    fallback
        Optional symbols from the same file, shape (n_ids,) (e.g. a ``symbol`` annotation column),
        used for Ensembl IDs that the shipped table cannot name. Empty strings are ignored.

    Returns
    -------
    GeneMapping
        Per-identifier symbols plus counts for the input report.
    """
    ids = [str(i).strip() for i in ids]
    ensembl, approved, aliases = _ensembl_to_symbol(), _approved_symbols(), _unambiguous_aliases()
    present = set(ids)
    out: list[str | None] = []
    result = GeneMapping(symbols=out, id_type=detect_id_type(ids))
    for k, gene_id in enumerate(ids):
        if _is_ensembl(gene_id):
            if _PAR_Y_RE.search(gene_id):
                out.append(None)
                result.n_par_y_dropped += 1
                continue
            stable = strip_version(gene_id)
            symbol = ensembl.get(stable, "")
            if symbol and not symbol.startswith("ENS") and symbol not in _family_labels():
                out.append(symbol)
                result.n_ensembl_mapped += 1
                continue
            extra = str(fallback[k]).strip() if fallback is not None else ""
            if extra and extra.lower() != "nan":
                out.append(extra)
                result.n_ensembl_mapped += 1
            else:
                out.append(stable)
                result.n_unmapped += 1
        elif gene_id in approved:
            out.append(gene_id)
        elif gene_id in aliases and aliases[gene_id] not in present:
            out.append(aliases[gene_id])
            result.n_alias_mapped += 1
            if len(result.alias_examples) < 10:
                result.alias_examples.append(f"{gene_id}->{aliases[gene_id]}")
        else:
            out.append(gene_id)
            result.n_unmapped += 1
    logger.info(
        "gene IDs (%s): %d Ensembl mapped, %d via alias, %d unmapped, %d PAR-Y dropped",
        result.id_type, result.n_ensembl_mapped, result.n_alias_mapped, result.n_unmapped, result.n_par_y_dropped,
    )
    return result


def harmonize_gene_ids(
    ids: Sequence[str], *, fallback: Sequence[str] | None = None
) -> tuple[list[str | None], GeneMapping]:
    """Harmonize a list of gene identifiers (e.g. a model's gene panel) to current human symbols.

    Same rules as :func:`map_gene_ids`, after checking that the genes are not mouse symbols.

    Returns
    -------
    symbols
        Shape (n_ids,); ``None`` for dropped PAR-Y rows. May contain duplicates (sum or de-duplicate them).
    mapping
        The full :class:`GeneMapping` with counts for a report.

    Raises
    ------
    BlueInputError
        If the identifiers are mouse gene symbols.
    """
    check_not_mouse(ids, what="input")
    mapping = map_gene_ids(ids, fallback=fallback)
    return mapping.symbols, mapping


def sum_duplicate_genes(
    matrix: np.ndarray | sp.spmatrix, names: Sequence[str | None]
) -> tuple[np.ndarray | sp.csr_matrix, list[str], int]:
    """Sum the columns of ``matrix`` that share a name; drop columns named ``None``.

    Parameters
    ----------
    matrix
        Dense or sparse array, shape (n_obs, n_genes), linear scale.
    names
        Column names, shape (n_genes,); ``None`` marks a column to drop.

    Returns
    -------
    matrix
        Shape (n_obs, n_unique), same kind (dense ndarray or CSR) and dtype as the input;
        columns in order of first appearance.
    unique_names
        The n_unique names.
    n_summed
        Number of columns that were folded into another one (n_kept - n_unique).
    """
    keep = np.array([n is not None for n in names], dtype=bool)
    kept_names = [str(n) for n in names if n is not None]
    codes, uniques = pd.factorize(pd.Index(kept_names), sort=False)
    n_summed = len(kept_names) - len(uniques)
    if sp.issparse(matrix):
        sub = sp.csr_matrix(matrix)[:, np.flatnonzero(keep)]
        if n_summed == 0:
            return sub.tocsr(), list(uniques), 0
        indicator = sp.csr_matrix(
            (np.ones(len(codes), dtype=sub.dtype), (np.arange(len(codes)), codes)), shape=(len(codes), len(uniques))
        )
        return (sub @ indicator).tocsr(), list(uniques), n_summed
    dense = np.asarray(matrix)[:, keep]
    if n_summed == 0:
        return dense, list(uniques), 0
    summed = np.zeros((dense.shape[0], len(uniques)), dtype=dense.dtype)
    np.add.at(summed.T, codes, dense.T)
    return summed, list(uniques), n_summed


def harmonize_var_names(adata: "anndata.AnnData", *, what: str = "reference") -> "anndata.AnnData":  # noqa: F821
    """Harmonize an AnnData's ``var_names`` to human symbols and sum duplicated genes.

    For the engine's references (cells x genes, CSR or dense counts). ``var`` annotation columns are
    dropped (they no longer match summed genes); ``obs``, ``obsm`` and ``uns`` are kept. The report
    is stored in ``uns["gene_harmonization"]``.

    Parameters
    ----------
    adata
        Shape (n_obs, n_genes).
    what
        Word used in error messages ("reference", "bulk").

    Returns
    -------
    anndata.AnnData
        New object, shape (n_obs, n_unique_symbols).

    Raises
    ------
    BlueInputError
        If the genes are mouse symbols.
    """
    import anndata

    ids = [str(v) for v in adata.var_names]
    check_not_mouse(ids, what=what)
    mapping = map_gene_ids(ids)
    matrix, names, n_summed = sum_duplicate_genes(adata.X, mapping.symbols)
    out = anndata.AnnData(X=matrix, obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(names, name=None)))
    for key, value in adata.obsm.items():
        out.obsm[key] = value
    out.uns.update(dict(adata.uns))
    out.uns["gene_harmonization"] = {
        "gene_id_type": mapping.id_type,
        "n_ensembl_mapped": mapping.n_ensembl_mapped,
        "n_alias_mapped": mapping.n_alias_mapped,
        "n_unmapped": mapping.n_unmapped,
        "n_par_y_dropped": mapping.n_par_y_dropped,
        "n_duplicates_summed": n_summed,
    }
    if n_summed:
        logger.info("%s: summed %d duplicated genes after mapping", what, n_summed)
    return out
