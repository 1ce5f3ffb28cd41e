"""Gene-set enrichment of one subtype's cell-type GEPs (gseapy prerank, or over-representation).

For a chosen group (subtype) vs all other samples, genes of one cell type's predicted expression
profile are ranked by Welch's t statistic on ``log1p(CPM)``; the ranking is tested against gene sets
shipped in ``blue_core/data/genesets/`` (MSigDB Hallmark v7.0 and C2:CP:Reactome v6.2; KEGG is never
shipped) or any GMT file the user gives.

- ``method="prerank"``: GSEA preranked (gseapy), fixed seed, ``threads=1``. NES > 0 = the set is
  higher in the group than in the other samples.
- ``method="ora"``: over-representation (one-sided hypergeometric test) of the ``ora_top`` genes with
  the largest positive t (higher in the group) among all genes of the panel (the background);
  odds ratio and Benjamini-Hochberg FDR.

Gene sets are restricted to the genes of the panel before testing; ``min_size`` (overlap with the
panel) adapts to small panels, and the number of testable sets is reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..exceptions import BlueInputError, BlueWarning
from .stats import benjamini_hochberg
from .tables import unmeasured_genes
from ..io.resources import package_data

__all__ = ["enrich", "rank_genes", "list_gene_set_collections", "load_gene_sets", "FewGeneSetsWarning"]

logger = logging.getLogger(__name__)

_COLLECTIONS: dict[str, dict[str, str]] = {
    "hallmark": {
        "file": "h.all.v7.0.symbols.gmt",
        "source": "MSigDB Hallmark v7.0 (Liberzon et al. 2015)",
        "licence": "CC BY 4.0 (MSigDB, Broad Institute)",
    },
    "reactome": {
        "file": "c2.cp.reactome.v6.2.symbols.gmt",
        "source": "MSigDB C2:CP:Reactome v6.2 (Reactome: Gillespie et al. 2022)",
        "licence": "Reactome CC0; MSigDB packaging CC BY 4.0",
    },
}

COLUMNS = ["term", "collection", "nes", "es", "odds_ratio", "p", "fdr", "n_genes", "set_size", "leading_genes"]


class FewGeneSetsWarning(BlueWarning):
    """Few gene sets could be tested on this gene panel: the enrichment is weakly informative."""


def _genesets_dir() -> Path:
    return package_data("genesets")


def _read_gmt(path: Path) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            parts = [p.strip() for p in line.rstrip("\n").split("\t")]
            if len(parts) < 3 or not parts[0]:
                if line.strip():
                    raise BlueInputError(
                        f"{path.name} line {line_no} is not GMT (tab-separated: name, description, genes...). "
                        "Fix or remove that line."
                    )
                continue
            sets[parts[0]] = list(dict.fromkeys(g for g in parts[2:] if g))
    return sets


def list_gene_set_collections() -> pd.DataFrame:
    """The gene-set collections shipped with BLUE studio.

    Returns
    -------
    pandas.DataFrame
        One row per collection: ``name``, ``file``, ``n_sets``, ``source``, ``licence``.
    """
    rows = []
    for name, info in _COLLECTIONS.items():
        path = _genesets_dir() / info["file"]
        rows.append({"name": name, "file": info["file"], "n_sets": len(_read_gmt(path)),
                     "source": info["source"], "licence": info["licence"]})
    return pd.DataFrame(rows)


def load_gene_sets(
    gene_sets: str | Sequence[str] | Mapping[str, Sequence[str]] = ("hallmark", "reactome"),
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Load gene sets by collection name, GMT path or dict.

    Parameters
    ----------
    gene_sets
        A shipped collection name (``"hallmark"``, ``"reactome"``), a path to a ``.gmt`` file, a list
        of those, or a dict set name -> genes (collection ``"custom"``).

    Returns
    -------
    (sets, collection_of)
        Set name -> genes, and set name -> collection name.
    """
    if isinstance(gene_sets, Mapping):
        sets = {str(k): [str(g) for g in v] for k, v in gene_sets.items()}
        return sets, {k: "custom" for k in sets}
    if isinstance(gene_sets, (str, Path)):
        gene_sets = [gene_sets]
    sets: dict[str, list[str]] = {}
    coll: dict[str, str] = {}
    for item in gene_sets:
        key = str(item)
        if key.lower() in _COLLECTIONS:
            name = key.lower()
            path = _genesets_dir() / _COLLECTIONS[name]["file"]
        elif key.lower() == "kegg":
            raise BlueInputError(
                "KEGG gene sets are not shipped with BLUE studio (KEGG licence). If you hold a KEGG licence, "
                "pass the path to your own .gmt file instead."
            )
        else:
            path = Path(key)
            if not path.is_file():
                raise BlueInputError(
                    f"Unknown gene-set collection {key!r}: use one of {sorted(_COLLECTIONS)} or a path to a .gmt file."
                )
            name = path.stem
        for set_name, genes in _read_gmt(path).items():
            sets[set_name] = genes
            coll[set_name] = name
    return sets, coll


def _expression_frame(data: Any, cell_type: str | None, include_inferred: bool = False) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif all(hasattr(data, a) for a in ("proportions", "expression", "cell_types", "genes")):
        cts = [str(c) for c in data.cell_types]
        if cell_type is None or str(cell_type) not in cts:
            raise BlueInputError(
                f"cell_type={cell_type!r} is not a cell type of this deconvolution. Choose one of {cts}."
            )
        k = cts.index(str(cell_type))
        frame = pd.DataFrame(
            np.asarray(data.expression)[:, k, :],
            index=[str(s) for s in data.proportions.index],
            columns=[str(g) for g in data.genes],
        )
        if not include_inferred:  # genes the input did not measure: their profiles are inferred, not tested
            inferred = unmeasured_genes(data)
            frame = frame.loc[:, [g for g in frame.columns if g not in inferred]]
    else:
        raise BlueInputError(
            f"Cannot rank genes of a {type(data).__name__}: pass a Deconvolution (with cell_type=) "
            "or a samples x genes DataFrame of CPM."
        )
    values = frame.to_numpy(dtype=float)
    if not np.isfinite(values).all() or (values < 0).any():
        raise BlueInputError(
            "The expression table has negative, NaN or infinite values: give linear CPM (>= 0), not log values."
        )
    out = pd.DataFrame(values, index=frame.index.astype(str), columns=frame.columns.astype(str))
    return out.T.groupby(level=0).mean().T if out.columns.duplicated().any() else out


def rank_genes(
    data: Any,
    labels: pd.Series,
    *,
    group: str,
    cell_type: str | None = None,
    include_inferred: bool = False,
) -> pd.Series:
    """Welch t statistic of each gene, ``group`` vs all other labelled samples, on log1p(CPM).

    Parameters
    ----------
    data
        A ``Deconvolution`` (then ``cell_type`` is required) or a samples x genes DataFrame (CPM).
    labels
        Sample ID -> group (e.g. ``SubtypeClustering.labels_``).
    group
        The group tested against the rest.
    cell_type
        Cell type whose GEP is ranked.
    include_inferred
        Rank the genes the input did not measure too (a ``Deconvolution`` only; by default they are left out,
        their profiles being inferred from the other genes).

    Returns
    -------
    pandas.Series
        Gene -> t (positive = higher in ``group``), sorted decreasing; genes constant in both groups
        are dropped. ``.attrs`` holds ``n_group`` and ``n_rest``.
    """
    from scipy.stats import ttest_ind

    expr = _expression_frame(data, cell_type, include_inferred)
    if not isinstance(labels, pd.Series):
        raise BlueInputError("labels must be a pandas Series: sample ID -> group.")
    lab = labels.copy()
    lab.index = lab.index.astype(str)
    lab = lab.astype(str)
    common = [s for s in expr.index if s in lab.index]
    if not common:
        raise BlueInputError(
            f"No sample IDs match between the expression ({list(expr.index[:3])}) and the labels "
            f"({list(lab.index[:3])}). Use the subtypes computed on this deconvolution."
        )
    lab = lab.loc[common]
    if str(group) not in set(lab):
        raise BlueInputError(f"group={group!r} is not among the labels {sorted(set(lab))}. Pick one of them.")
    in_group = (lab == str(group)).to_numpy()
    if in_group.sum() < 2 or (~in_group).sum() < 2:
        raise BlueInputError(
            f"group {group!r} has {int(in_group.sum())} samples and the rest {int((~in_group).sum())}: "
            "each side needs at least 2 samples to rank genes."
        )
    x = np.log1p(expr.loc[common].to_numpy())
    a, b = x[in_group], x[~in_group]
    keep = (a.var(axis=0) + b.var(axis=0)) > 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ttest_ind(a[:, keep], b[:, keep], equal_var=False).statistic
    genes = expr.columns[keep]
    ranks = pd.Series(np.nan_to_num(t, nan=0.0), index=genes, name="t").sort_values(ascending=False, kind="stable")
    ranks.attrs.update({"n_group": int(in_group.sum()), "n_rest": int((~in_group).sum())})
    return ranks


def _adaptive_min_size(n_genes: int) -> int:
    if n_genes >= 5000:
        return 15
    if n_genes >= 2000:
        return 10
    return 5


def enrich(
    data: Any,
    labels: pd.Series,
    *,
    group: str,
    cell_type: str | None = None,
    gene_sets: str | Sequence[str] | Mapping[str, Sequence[str]] = ("hallmark", "reactome"),
    method: Literal["prerank", "ora"] = "prerank",
    include_inferred: bool = False,
    min_size: int | None = None,
    max_size: int = 500,
    permutations: int = 1000,
    ora_top: int | None = None,
    seed: int = 0,
    threads: int = 1,
) -> pd.DataFrame:
    """Gene-set enrichment of ``group`` vs the other samples within one cell type's GEP.

    Parameters
    ----------
    data
        A ``Deconvolution`` or a samples x genes DataFrame (CPM).
    labels
        Sample ID -> group.
    group
        Group to test (e.g. ``"S1"``).
    cell_type
        Cell type whose GEP is used (required for a ``Deconvolution``).
    gene_sets
        Collections (``"hallmark"``, ``"reactome"``), GMT paths, or a dict name -> genes.
    method
        ``"prerank"`` (GSEA on Welch t) or ``"ora"`` (hypergeometric test of the top up genes).
    include_inferred
        Test the genes the input did not measure too (see :func:`rank_genes`); ``attrs["n_inferred_left_out"]``
        counts those left out.
    min_size
        Smallest overlap of a set with the panel genes to be tested. Default adapts to the panel:
        15 (>= 5000 genes), 10 (>= 2000), else 5.
    max_size
        Largest overlap tested.
    permutations
        Gene-set permutations for prerank (p-value resolution is 1 / permutations).
    ora_top
        Genes taken as "up" for ORA; default 10% of the panel (at least 10).
    seed
        Random seed (prerank permutations).
    threads
        gseapy threads (keep 1 on shared machines).

    Returns
    -------
    pandas.DataFrame
        One row per tested set, sorted by p then by -|NES|: ``term``, ``collection``, ``nes`` and ``es``
        (prerank; NaN for ORA), ``odds_ratio`` (ORA; NaN for prerank), ``p``, ``fdr``, ``n_genes``
        (overlap with the panel), ``set_size`` (genes in the set), ``leading_genes`` (``;``-joined:
        leading edge for prerank, overlapping up genes for ORA). ``.attrs``: ``group``, ``cell_type``,
        ``method``, ``n_panel_genes``, ``n_sets_total``, ``n_sets_tested``, ``min_size``, ``n_group``,
        ``n_rest``.
    """
    if method not in ("prerank", "ora"):
        raise BlueInputError(f"method must be 'prerank' or 'ora', not {method!r}.")
    t0 = time.perf_counter()
    ranks = rank_genes(data, labels, group=group, cell_type=cell_type, include_inferred=include_inferred)
    sets, coll = load_gene_sets(gene_sets)
    panel = set(ranks.index)
    n_panel = len(panel)
    min_size = _adaptive_min_size(n_panel) if min_size is None else int(min_size)
    overlaps = {name: [g for g in genes if g in panel] for name, genes in sets.items()}
    testable = {n: g for n, g in overlaps.items() if min_size <= len(g) <= max_size}
    attrs = {
        "group": str(group), "cell_type": None if cell_type is None else str(cell_type), "method": method,
        "n_panel_genes": n_panel, "n_sets_total": len(sets), "n_sets_tested": len(testable),
        "min_size": min_size, "n_group": ranks.attrs["n_group"], "n_rest": ranks.attrs["n_rest"],
        "n_inferred_left_out": 0 if include_inferred or isinstance(data, pd.DataFrame) else len(
            unmeasured_genes(data) & set(map(str, data.genes))),
    }
    if not testable:
        best = max((len(g) for g in overlaps.values()), default=0)
        left_out = attrs["n_inferred_left_out"]
        raise BlueInputError(
            f"No gene set has between {min_size} and {max_size} genes in this panel of {n_panel} genes "
            f"(largest overlap: {best}). "
            + (f"{left_out:,} of the profile's genes were not measured in your data and were left out: "
               "include_inferred=True (CLI --include-inferred; app: tick 'Also rank the genes your data did not "
               "measure') ranks them too, as inferred profiles. " if left_out else "")
            + "Or lower min_size (e.g. min_size=3), or use a model with more output genes."
        )
    if len(testable) < 5:
        import warnings

        warnings.warn(
            f"Only {len(testable)} of {len(sets)} gene sets have >= {min_size} genes in this {n_panel}-gene panel: "
            "the enrichment is weakly informative.",
            FewGeneSetsWarning,
            stacklevel=2,
        )
    logger.info("enrichment (%s): %d genes, %d of %d sets testable (min_size=%d)",
                method, n_panel, len(testable), len(sets), min_size)
    if method == "prerank":
        table = _prerank(ranks, testable, min_size, max_size, permutations, seed, threads)
    else:
        table = _ora(ranks, testable, ora_top)
    table["collection"] = table["term"].map(coll)
    table["set_size"] = table["term"].map(lambda t: len(sets[t]))
    table["n_genes"] = table["term"].map(lambda t: len(testable[t]))
    table = table[COLUMNS]
    abs_nes = table["nes"].abs().fillna(0.0)
    table = table.assign(_a=-abs_nes).sort_values(["p", "_a", "term"], kind="stable").drop(columns="_a")
    table = table.reset_index(drop=True)
    table.attrs.update(attrs)
    logger.info("finished enrichment (%.1fs)", time.perf_counter() - t0)
    return table


def _prerank(
    ranks: pd.Series, sets: dict[str, list[str]], min_size: int, max_size: int, permutations: int, seed: int,
    threads: int,
) -> pd.DataFrame:
    import gseapy as gp

    rnk = ranks.copy()
    res = gp.prerank(
        rnk=rnk, gene_sets=sets, min_size=min_size, max_size=max_size, permutation_num=int(permutations),
        threads=int(threads), seed=int(seed), outdir=None, no_plot=True, verbose=False,
    )
    r = res.res2d
    # A permutation p-value is never 0: with none of the permutations as extreme, p <= 1 / (permutations + 1)
    # (Phipson & Smyth 2010). The FDR is Benjamini-Hochberg over these p (one rule for prerank and ORA), so a
    # table never shows p = 0 beside FDR = 1.
    p = pd.to_numeric(r["NOM p-val"], errors="coerce").to_numpy(dtype=float)
    p = np.where(np.isfinite(p), np.maximum(p, 1.0 / (int(permutations) + 1)), np.nan)
    return pd.DataFrame(
        {
            "term": r["Term"].astype(str).to_numpy(),
            "nes": pd.to_numeric(r["NES"], errors="coerce").to_numpy(dtype=float),
            "es": pd.to_numeric(r["ES"], errors="coerce").to_numpy(dtype=float),
            "odds_ratio": np.nan,
            "p": p,
            "fdr": benjamini_hochberg(p),
            "leading_genes": r["Lead_genes"].astype(str).to_numpy(),
        }
    )


def _ora(ranks: pd.Series, sets: dict[str, list[str]], top: int | None) -> pd.DataFrame:
    from scipy.stats import hypergeom

    n_panel = ranks.size
    top = max(10, int(round(0.1 * n_panel))) if top is None else int(top)
    up = set(ranks[ranks > 0].index[:top])
    n_up = len(up)
    rows = []
    for name, genes in sets.items():
        hits = [g for g in genes if g in up]
        k, m = len(hits), len(genes)
        p = float(hypergeom.sf(k - 1, n_panel, m, n_up)) if n_up else 1.0
        a, b, c = k, n_up - k, m - k
        d = n_panel - n_up - m + k
        odds = (a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5))
        rows.append({"term": name, "nes": np.nan, "es": np.nan, "odds_ratio": odds, "p": p,
                     "leading_genes": ";".join(hits)})
    table = pd.DataFrame(rows)
    table["fdr"] = benjamini_hochberg(table["p"].to_numpy())
    return table
