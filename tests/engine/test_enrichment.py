"""enrich(): a planted gene set is found (prerank and ORA); small panels and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blue_core.analysis.enrichment import enrich, list_gene_set_collections, load_gene_sets
from blue_core.exceptions import BlueInputError

PLANTED = [f"UP{i}" for i in range(20)]


def _data(seed: int = 0) -> tuple[pd.DataFrame, pd.Series, dict[str, list[str]]]:
    rng = np.random.default_rng(seed)
    genes = PLANTED + [f"G{i}" for i in range(180)]
    labels = pd.Series(["A"] * 12 + ["B"] * 12, index=[f"s{i}" for i in range(24)])
    x = pd.DataFrame(rng.lognormal(3, 0.5, (24, len(genes))), index=labels.index, columns=genes)
    x.loc[labels == "A", PLANTED] *= 3.0
    sets = {"PLANTED": PLANTED + ["ABSENT1"], **{f"RANDOM{j}": list(rng.choice(genes[20:], 20, replace=False)) for j in range(8)}}
    return x, labels, sets


def test_prerank_finds_planted_set():
    x, labels, sets = _data()
    res = enrich(x, labels, group="A", gene_sets=sets, permutations=100)
    top = res.iloc[0]
    assert top["term"] == "PLANTED" and top["nes"] > 0 and top["fdr"] < 0.05
    assert top["n_genes"] == 20 and top["set_size"] == 21
    assert res.attrs["n_sets_tested"] == 9 and res.attrs["n_panel_genes"] == 200
    again = enrich(x, labels, group="A", gene_sets=sets, permutations=100)
    pd.testing.assert_frame_equal(res, again)  # fixed seed


def test_ora_finds_planted_set():
    x, labels, sets = _data()
    res = enrich(x, labels, group="A", gene_sets=sets, method="ora", ora_top=20)
    assert res.iloc[0]["term"] == "PLANTED" and res.iloc[0]["fdr"] < 1e-6
    assert res.iloc[0]["odds_ratio"] > 10


def test_deconvolution_input_and_shipped_collections():
    from types import SimpleNamespace

    x, labels, _ = _data()
    hall, coll = load_gene_sets("hallmark")
    assert len(hall) == 50 and set(coll.values()) == {"hallmark"}
    panel = list(dict.fromkeys(hall["HALLMARK_MYC_TARGETS_V1"] + list(x.columns)))[:400]
    rng = np.random.default_rng(0)
    expr = rng.lognormal(3, 0.5, (24, 2, len(panel)))
    expr[:12, 1, :200] *= 3.0
    d = SimpleNamespace(proportions=pd.DataFrame(0.5, index=labels.index, columns=["a", "b"]),
                        expression=expr, cell_types=["a", "b"], genes=panel)
    res = enrich(d, labels, group="A", cell_type="b", gene_sets="hallmark", method="ora")
    assert res.iloc[0]["term"] == "HALLMARK_MYC_TARGETS_V1"
    assert res.attrs["min_size"] == 5  # small panel
    cols = list_gene_set_collections()
    assert set(cols["name"]) == {"hallmark", "reactome"}
    with pytest.raises(BlueInputError, match="cell_type"):
        enrich(d, labels, group="A", cell_type="zzz")


def test_errors():
    x, labels, sets = _data()
    with pytest.raises(BlueInputError, match="not among the labels"):
        enrich(x, labels, group="C", gene_sets=sets)
    with pytest.raises(BlueInputError, match="KEGG"):
        enrich(x, labels, group="A", gene_sets="kegg")
    with pytest.raises(BlueInputError, match="No gene set"):
        enrich(x, labels, group="A", gene_sets={"S": ["NOPE1", "NOPE2"]})
    with pytest.raises(BlueInputError, match="negative"):
        enrich(-x, labels, group="A", gene_sets=sets)
    with pytest.raises(BlueInputError, match="No sample IDs"):
        enrich(x, labels.rename(lambda s: s + "x"), group="A", gene_sets=sets)


def test_prerank_p_is_never_zero_and_fdr_agrees_with_it():
    """Issue 13.5: no p = 0 beside FDR = 1 -- permutation p >= 1/(permutations + 1), FDR = BH over those p."""
    import numpy as np

    from blue_core.analysis.enrichment import _prerank
    from blue_core.analysis.stats import benjamini_hochberg

    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(200)]
    ranks = pd.Series(np.sort(rng.normal(size=200))[::-1], index=genes)
    sets = {"TOP": genes[:15], "RANDOM": list(rng.choice(genes, 15, replace=False)), "BOTTOM": genes[-15:]}
    table = _prerank(ranks, sets, 5, 500, 50, 0, 1)
    assert (table["p"] >= 1 / 51).all()
    assert np.allclose(table["fdr"], benjamini_hochberg(table["p"]))
