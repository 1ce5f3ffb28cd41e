"""Gene identifier harmonization (blue_core.io.genes): real IDs, tiny synthetic matrices."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from blue_core.io import genes
from blue_core.exceptions import BlueInputError


def test_strip_version_and_id_type():
    assert genes.strip_version("ENSG00000141510.16") == "ENSG00000141510"
    assert genes.strip_version("ENSG00000182378.14_PAR_Y") == "ENSG00000182378"
    assert genes.strip_version("TP53") == "TP53"
    assert genes.detect_id_type(["ENSG00000141510.16", "ENSG00000111640.14"]) == "ensembl_versioned"
    assert genes.detect_id_type(["ENSG00000141510", "ENSG00000111640"]) == "ensembl"
    assert genes.detect_id_type(["TP53", "GAPDH", "CD4"]) == "symbol"
    assert genes.detect_id_type(["TP53", "ENSG00000111640"]) == "mixed"


def test_ensembl_versioned_to_symbol_and_par_y_dropped():
    ids = ["ENSG00000141510.16", "ENSG00000111640.14", "ENSG00000010610.9", "ENSGR0000182378.9", "ENSG00000182378.14_PAR_Y"]
    mapping = genes.map_gene_ids(ids)
    assert mapping.symbols == ["TP53", "GAPDH", "CD4", None, None]
    assert mapping.n_ensembl_mapped == 3
    assert mapping.n_par_y_dropped == 2


def test_unknown_ensembl_uses_fallback_symbol_else_stable_id():
    mapping = genes.map_gene_ids(["ENSG99999999999.1", "ENSG99999999998.2"], fallback=["MYGENE", ""])
    assert mapping.symbols == ["MYGENE", "ENSG99999999998"]
    assert mapping.n_unmapped == 1


def test_alias_fallback_only_when_unambiguous_and_target_absent():
    mapping = genes.map_gene_ids(["BAI1", "SDPR", "TP53"])
    assert mapping.symbols == ["ADGRB1", "CAVIN2", "TP53"]
    assert mapping.n_alias_mapped == 2
    # the target symbol is already present: keep the old name rather than merging two rows
    assert genes.map_gene_ids(["BAI1", "ADGRB1"]).symbols == ["BAI1", "ADGRB1"]
    # "HOX1" is an alias of several genes: never resolved
    assert genes.map_gene_ids(["HOX1"]).symbols == ["HOX1"]


def test_mouse_symbols_detected_with_message():
    mouse = ["Cd4", "Ins1", "Gapdh", "Actb", "Trp53", "Nkg7", "Cd8a", "Lyz2"]
    assert genes.looks_like_mouse(mouse)
    assert not genes.looks_like_mouse(["CD4", "INS", "GAPDH", "C1orf112", "TP53"])
    with pytest.raises(BlueInputError, match="mouse gene symbols.*human.*ortholog"):
        genes.check_not_mouse(mouse)


def test_sum_duplicate_genes_dense_and_sparse():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    names = ["A", "B", "A", None]
    dense, uniq, n = genes.sum_duplicate_genes(x, names)
    assert uniq == ["A", "B"] and n == 1
    np.testing.assert_array_equal(dense, [[4.0, 2.0], [12.0, 6.0]])
    sparse, uniq_s, n_s = genes.sum_duplicate_genes(sp.csr_matrix(x, dtype=np.float32), names)
    assert sp.isspmatrix_csr(sparse) and sparse.dtype == np.float32 and uniq_s == uniq and n_s == 1
    np.testing.assert_array_equal(sparse.toarray(), dense)


def test_harmonize_var_names_for_reference():
    x = sp.csr_matrix(np.arange(8, dtype=np.float32).reshape(2, 4))
    ref = anndata.AnnData(
        X=x,
        obs=pd.DataFrame({"cell_type": ["a", "b"]}, index=["c1", "c2"]),
        var=pd.DataFrame(index=["ENSG00000141510.16", "TP53", "ENSG00000111640.2", "ENSGR0000182378.9"]),
    )
    out = genes.harmonize_var_names(ref)
    assert list(out.var_names) == ["TP53", "GAPDH"]
    np.testing.assert_array_equal(out.X.toarray(), [[1.0, 2.0], [9.0, 6.0]])
    assert out.uns["gene_harmonization"]["n_duplicates_summed"] == 1
    assert list(out.obs["cell_type"]) == ["a", "b"]


def test_harmonize_gene_ids_list():
    symbols, mapping = genes.harmonize_gene_ids(["ENSG00000141510.16", "ENSGR0000182378.9", "SDPR"])
    assert symbols == ["TP53", None, "CAVIN2"]
    assert mapping.id_type == "mixed"
    with pytest.raises(BlueInputError, match="mouse"):
        genes.harmonize_gene_ids(["Cd4", "Ins1", "Gapdh", "Actb"])


def test_non_human_ensembl_and_transcripts_refused():
    with pytest.raises(BlueInputError, match="non-human Ensembl IDs.*ortholog"):
        genes.check_not_mouse(["ENSMUSG00000023274.5", "ENSMUSG00000035299"])
    with pytest.raises(BlueInputError, match="transcript IDs.*tximport"):
        genes.check_not_mouse(["ENST00000269305.9", "ENST00000229239"])
    genes.check_not_mouse(["ENSG00000141510.16", "ENSGR0000182378.9", "TP53"])  # human: no error


def test_rna_family_labels_keep_ensembl_ids():
    # two Y_RNA loci: not summed into one "Y_RNA" feature
    table = genes._ensembl_to_symbol()
    y_rna = [k for k, v in table.items() if v == "Y_RNA"][:2]
    assert genes.map_gene_ids([f"{y}.1" for y in y_rna]).symbols == y_rna
