"""read_bulk / read_reference: formats, orientation, units and every bad-input message.

Synthetic values over real human symbols (so that identifier-based orientation can work).
"""

from __future__ import annotations

import gzip
import io
import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from blue_core.exceptions import BlueInputError, BlueWarning, LogScaleInputWarning
from blue_core.io import read_bulk, read_reference

GENES = [
    "TP53", "GAPDH", "CD4", "NKG7", "INS", "ACTB", "CD8A", "CD3E", "MS4A1", "CD14", "LYZ", "PTPRC", "B2M",
    "HBB", "CD19", "CD79A", "GNLY", "FCGR3A", "IL7R", "CCR7", "S100A8", "S100A9", "GCG", "SST", "PPY",
    "KRT19", "PRSS1", "CPA1", "COL1A1", "CD34",
]


def _counts(n_samples: int = 3, seed: int = 0) -> pd.DataFrame:
    """genes x samples integer counts, max well above 50."""
    rng = np.random.default_rng(seed)
    values = rng.poisson(200, size=(len(GENES), n_samples)).astype(float)
    values[0, :] = 1000  # guarantee max > 50 even for one sample
    return pd.DataFrame(values, index=pd.Index(GENES, name="gene"), columns=[f"S{i + 1}" for i in range(n_samples)])


def _csv(frame: pd.DataFrame, **kw) -> bytes:
    return frame.to_csv(**kw).encode()


def test_counts_csv_genes_x_samples(tmp_path):
    frame = _counts()
    path = tmp_path / "bulk.csv"
    path.write_bytes(_csv(frame))
    bulk = read_bulk(path)
    assert bulk.shape == (3, len(GENES))
    assert list(bulk.obs_names) == ["S1", "S2", "S3"] and list(bulk.var_names) == GENES
    assert bulk.X.dtype == np.float64 and isinstance(bulk.X, np.ndarray)
    np.testing.assert_array_equal(bulk.X, frame.to_numpy().T)
    report = bulk.uns["blue_input"]
    assert report["orientation"] == "genes_x_samples" and report["units"] == "counts"
    assert report["gene_id_type"] == "symbol" and report["n_duplicates_summed"] == 0


def test_samples_x_genes_tsv_and_relative_units():
    frame = _counts() * 1.37
    bulk = read_bulk(frame.T.to_csv(sep="\t").encode(), filename="x.tsv")
    assert bulk.uns["blue_input"]["orientation"] == "samples_x_genes"
    assert bulk.uns["blue_input"]["units"] == "relative"
    np.testing.assert_allclose(bulk.X, frame.to_numpy().T)


@pytest.mark.parametrize("transpose", [False, True])
def test_single_sample_reads_by_identifiers(transpose):
    frame = _counts(n_samples=1)
    data = _csv(frame.T if transpose else frame)
    bulk = read_bulk(data, filename="one.csv")
    assert bulk.shape == (1, len(GENES))
    assert list(bulk.obs_names) == ["S1"]
    np.testing.assert_array_equal(bulk.X[0], frame["S1"].to_numpy())


def test_log2p1_round_trip_warns():
    frame = _counts()
    logged = np.log2(frame + 1.0)
    with pytest.warns(LogScaleInputWarning, match=r"2\*\*x - 1"):
        bulk = read_bulk(_csv(logged), filename="log.csv")
    assert bulk.uns["blue_input"]["units"] == "log_converted"
    assert any("log" in w for w in bulk.uns["blue_input"]["warnings"])
    np.testing.assert_allclose(bulk.X, frame.to_numpy().T, rtol=1e-9)


def test_log10_input_is_recognised_or_set_explicitly():
    """Issue 15.1: log10(TPM + 1) (e.g. Leucegene, max ~5.3) is read back as log10, not log2, and says so."""
    frame = _counts() * 50.0 + 0.5  # linear values up to well above 1,000
    logged = np.log10(frame + 1.0)
    assert logged.to_numpy().max() < 7
    with pytest.warns(LogScaleInputWarning, match=r"log10\(x \+ 1\).*no RNA-seq sample tops out that low"):
        bulk = read_bulk(_csv(logged), filename="log10.csv")
    np.testing.assert_allclose(bulk.X, frame.to_numpy().T, rtol=1e-9)
    log2 = np.log2(frame + 1.0)  # a real log2 file has values above 7: unchanged rule
    assert log2.to_numpy().max() >= 7
    with pytest.warns(LogScaleInputWarning, match=r"log2\(x \+ 1\)"):
        np.testing.assert_allclose(read_bulk(_csv(log2), filename="log2.csv").X, frame.to_numpy().T, rtol=1e-9)
    small = np.log2(_counts() / 10 + 1.0)  # a log2 file with a low maximum: the user sets the base
    with pytest.warns(LogScaleInputWarning, match="log2"):
        np.testing.assert_allclose(read_bulk(_csv(small), filename="s.csv", log_base="2").X,
                                   (_counts() / 10).to_numpy().T, rtol=1e-9)
    with pytest.raises(BlueInputError, match="log_base"):
        read_bulk(_csv(small), filename="s.csv", log_base="7")


def test_log2_cpm_with_floor_round_trip():
    frame = _counts()
    frame.iloc[3:6, :] = 0.0
    cpm = frame / frame.sum() * 1e6
    logged = np.log2(cpm.where(cpm > 0, 2.0 ** -7.1686))  # TARGET-style floor for zero counts
    logged.iloc[7, 0] = -1.5  # a genuine value below 1 CPM
    expected = cpm.copy()
    expected.iloc[7, 0] = 2.0 ** -1.5
    with pytest.warns(LogScaleInputWarning, match=r"2\*\*x.*floor"):
        bulk = read_bulk(_csv(logged), filename="logcpm.csv")
    np.testing.assert_allclose(bulk.X, expected.to_numpy().T, rtol=1e-9)
    assert (bulk.X[:, 3:6] == 0).all()


def test_gz_bytes_and_file_likes(tmp_path):
    frame = _counts()
    raw = gzip.compress(_csv(frame))
    path = tmp_path / "bulk.csv.gz"
    path.write_bytes(raw)
    expected = frame.to_numpy().T
    np.testing.assert_array_equal(read_bulk(path).X, expected)
    np.testing.assert_array_equal(read_bulk(raw).X, expected)  # gzip magic sniffed without a name
    handle = io.BytesIO(raw)
    handle.name = "upload.csv.gz"
    np.testing.assert_array_equal(read_bulk(handle).X, expected)

    class Uploaded:  # Streamlit UploadedFile: .name + .getvalue()
        name = "cohort.csv.gz"

        def getvalue(self) -> bytes:
            return raw

    bulk = read_bulk(Uploaded())
    assert bulk.uns["blue_input"]["source"] == "cohort.csv.gz"
    np.testing.assert_array_equal(bulk.X, expected)


def test_cohort_directory(tmp_path):
    (tmp_path / "bulk.csv.gz").write_bytes(gzip.compress(_csv(_counts())))
    assert read_bulk(tmp_path).shape == (3, len(GENES))
    with pytest.raises(BlueInputError, match="without a bulk.csv.gz"):
        read_bulk(tmp_path / "..")


def test_semicolon_delimiter_sniffed():
    frame = _counts()
    bulk = read_bulk(frame.to_csv(sep=";").encode(), filename="x.txt")
    np.testing.assert_array_equal(bulk.X, frame.to_numpy().T)


def test_xlsx(tmp_path):
    frame = _counts()
    path = tmp_path / "bulk.xlsx"
    frame.to_excel(path, engine="openpyxl")
    bulk = read_bulk(path.read_bytes(), filename="bulk.xlsx")
    np.testing.assert_array_equal(bulk.X, frame.to_numpy().T)
    assert bulk.uns["blue_input"]["format"] == "xlsx"


def test_h5ad(tmp_path):
    frame = _counts()
    adata = anndata.AnnData(X=sp.csr_matrix(frame.to_numpy().T), obs=pd.DataFrame(index=frame.columns), var=pd.DataFrame(index=GENES))
    path = tmp_path / "bulk.h5ad"
    adata.write_h5ad(path)
    bulk = read_bulk(path)
    assert bulk.uns["blue_input"]["orientation"] == "samples_x_genes"
    np.testing.assert_array_equal(bulk.X, frame.to_numpy().T)


def test_ensembl_versions_annotation_columns_and_duplicates():
    frame = _counts()
    ids = ["ENSG00000141510.16", "ENSG00000111640.14", "ENSG00000010610.9"] + GENES[3:]
    frame.index = pd.Index(ids, name="gene")
    frame.insert(0, "symbol", ["TP53", "GAPDH", "CD4"] + GENES[3:])
    frame.insert(1, "chrom", "1")
    dup = frame.iloc[[1]].copy()
    dup.index = ["GAPDH"]  # same gene once as Ensembl ID, once as symbol: summed
    bulk = read_bulk(_csv(pd.concat([frame, dup])), filename="ens.csv")
    report = bulk.uns["blue_input"]
    assert report["gene_id_type"] == "symbol"  # 3 of 31 Ensembl IDs: under the 10% "mixed" threshold
    assert report["n_ensembl_mapped"] == 3
    assert report["dropped_columns"] == ["symbol", "chrom"]
    assert report["n_duplicates_summed"] == 1
    assert list(bulk.var_names[:3]) == ["TP53", "GAPDH", "CD4"]
    np.testing.assert_array_equal(bulk[:, "GAPDH"].X.ravel(), 2 * frame.iloc[1, 2:].to_numpy(dtype=float))


def _model_with(genes):
    """A stand-in model with these input genes: ``check_genes`` is the model's rule (reading knows no model)."""
    from blue_core.engine.model import BlueModel

    model = BlueModel.__new__(BlueModel)
    model.input_genes, model.card = list(genes), {}
    return model


def test_model_genes_overlap_error_names_the_files_identifiers():
    """Issue 23.5: ``read_bulk`` reads and harmonises only; the model decides on the genes, and its refusal still
    names what the file holds (the input report keeps the identifier type and examples)."""
    bulk = read_bulk(_csv(_counts()), filename="x.csv")
    assert "n_model_genes" not in bulk.uns["blue_input"]
    match = _model_with(GENES[:10] + ["NOTAGENE1"]).check_genes(bulk.var_names)
    assert (match.n_expected, match.n_matched) == (11, 10)
    frame = _counts()
    frame.index = [f"ENSG{90000000000 + i:011d}.3" for i in range(len(GENES))]
    bulk = read_bulk(_csv(frame), filename="x.csv")
    with pytest.raises(BlueInputError, match=r"0 of 2,000 model input genes.*Ensembl IDs with versions \(e\.g\. ENSG"):
        _model_with([f"GENE{i}" for i in range(2000)]).check_genes(bulk.var_names, report=bulk.uns["blue_input"])


# ------------------------------------------------------------------------------- bad inputs
def test_empty_file():
    with pytest.raises(BlueInputError, match="is empty"):
        read_bulk(b"", filename="empty.csv")


def test_header_only():
    with pytest.raises(BlueInputError, match="no data rows"):
        read_bulk(b"gene,S1,S2\n", filename="h.csv")


def test_binary_file():
    with pytest.raises(BlueInputError, match="binary file.*CSV"):
        read_bulk(bytes(range(256)) * 10, filename="data.rds")


def test_old_xls():
    with pytest.raises(BlueInputError, match=r"\.xls.*xlsx"):
        read_bulk(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, filename="a.xls")


def test_wrong_delimiter_single_column():
    text = "\n".join(["gene:S1:S2"] + [f"{g}:1:2" for g in GENES]).encode()
    with pytest.raises(BlueInputError, match="only one column.*CSV"):
        read_bulk(text, filename="x.csv")


@pytest.mark.parametrize("bad, word", [("", "missing"), ("NA", "missing"), ("inf", "infinite")])
def test_nan_and_inf(bad, word):
    text = _csv(_counts()).decode().replace("1000.0", bad, 1).encode()
    with pytest.raises(BlueInputError, match=f"{word}.*fill missing expression with 0"):
        read_bulk(text, filename="x.csv")


def test_negative_not_log():
    frame = _counts() - 300.0  # large negative values, max > 50: not log
    with pytest.raises(BlueInputError, match="negative values.*non-negative raw counts or TPM"):
        read_bulk(_csv(frame), filename="x.csv")


def test_centred_log_ratios_rejected():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(len(GENES), 4)), index=GENES, columns=list("ABCD"))
    with pytest.raises(BlueInputError, match="log-ratio"):
        read_bulk(_csv(frame), filename="x.csv")


def test_non_numeric_cell():
    text = _csv(_counts()).decode().replace("1000.0", "12x", 1).encode()
    with pytest.raises(BlueInputError, match=r"non-numeric value '12x' in sample 'S1'"):
        read_bulk(text, filename="x.csv")


def test_duplicated_sample_names():
    frame = _counts()
    frame.columns = ["S1", "S2", "S1"]
    with pytest.raises(BlueInputError, match="duplicated sample names: S1.*unique"):
        read_bulk(_csv(frame), filename="x.csv")
    with pytest.raises(BlueInputError, match="duplicated sample names"):
        read_bulk(frame.T.to_csv().encode(), filename="x.csv")


def test_mouse_genes():
    frame = _counts()
    frame.index = ["Cd4", "Ins1", "Gapdh", "Actb", "Trp53", "Nkg7", "Cd8a", "Lyz2", "Cd19", "Ptprc"] + [
        f"Gm{i}" for i in range(len(GENES) - 10)
    ]
    with pytest.raises(BlueInputError, match="mouse gene symbols.*ortholog"):
        read_bulk(_csv(frame), filename="mouse.csv")


def test_missing_file():
    with pytest.raises(BlueInputError, match="File not found"):
        read_bulk("/nonexistent/bulk.csv")


# ------------------------------------------------------------------------------- reference
def _reference(tmp_path, x=None, cell_types=None, name="ref.h5ad"):
    rng = np.random.default_rng(0)
    n = 24
    x = rng.poisson(3, size=(n, len(GENES))).astype(np.float32) if x is None else x
    cell_types = cell_types if cell_types is not None else ["T"] * 12 + ["B"] * 10 + ["NK"] * 2
    obs = pd.DataFrame({"label": cell_types, "patient": [f"d{i % 3}" for i in range(n)]}, index=[f"c{i}" for i in range(n)])
    var_names = ["ENSG00000141510.16"] + GENES[1:]
    path = tmp_path / name
    anndata.AnnData(X=sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=var_names)).write_h5ad(path)
    return path, x


def test_read_reference(tmp_path):
    path, x = _reference(tmp_path)
    with pytest.warns(BlueWarning, match=r"fewer than 10 cells: NK \(2\)"):
        ref = read_reference(path, cell_type_key="label", donor_key="patient")
    assert sp.isspmatrix_csr(ref.X) and ref.X.dtype == np.float32
    assert isinstance(ref.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert list(ref.obs["donor"][:3]) == ["d0", "d1", "d2"] and "label" in ref.obs
    assert ref.var_names[0] == "TP53"
    np.testing.assert_array_equal(ref.X.toarray(), x)


def test_reference_errors(tmp_path):
    path, _ = _reference(tmp_path)
    with pytest.raises(BlueInputError, match=r"no column 'cell_type'.*Available obs columns: label, patient"):
        read_reference(path)
    logged, _ = _reference(tmp_path, x=np.log1p(np.random.default_rng(0).poisson(3, size=(24, len(GENES)))).astype(np.float32), name="log.h5ad")
    with pytest.raises(BlueInputError, match="log-normalised.*raw counts"):
        read_reference(logged, cell_type_key="label")
    single, _ = _reference(tmp_path, cell_types=["T"] * 24, name="one.h5ad")
    with pytest.raises(BlueInputError, match="at least 2"):
        read_reference(single, cell_type_key="label")
    with pytest.raises(BlueInputError, match="must be an AnnData .h5ad"):
        read_reference(_csv(_counts()), filename="x.csv")


# ------------------------------------------------------------------------------- layouts seen in the wild
def test_r_write_table_header_without_row_name_field():
    frame = _counts()
    lines = ["\t".join(frame.columns)] + ["\t".join([g, *map(str, row)]) for g, row in zip(frame.index, frame.to_numpy())]
    bulk = read_bulk("\n".join(lines).encode(), filename="r.txt")
    np.testing.assert_array_equal(bulk.X, frame.to_numpy().T)


def test_gct_file():
    frame = _counts()
    body = frame.copy()
    body.insert(0, "Description", "na")
    text = f"#1.2\n{frame.shape[0]}\t{frame.shape[1]}\n" + body.rename_axis("Name").to_csv(sep="\t")
    bulk = read_bulk(text.encode(), filename="x.gct")
    assert bulk.uns["blue_input"]["dropped_columns"] == ["Description"]
    np.testing.assert_array_equal(bulk.X, frame.to_numpy().T)


def test_pandas_row_index_column_and_unnamed_rows():
    frame = _counts().reset_index()  # columns: gene, S1.. ; written with a 0..n-1 index first
    text = frame.to_csv().encode() + b"31,,1,2,3\n"
    bulk = read_bulk(text, filename="x.csv")
    assert list(bulk.var_names) == GENES
    assert any("without an identifier" in w for w in bulk.uns["blue_input"]["warnings"])


def test_numeric_gene_ids_named_in_message():
    frame = _counts()
    frame.index = [str(7157 + i) for i in range(len(GENES))]
    with pytest.warns(BlueWarning, match="known human genes"):
        bulk = read_bulk(_csv(frame), filename="x.csv")
    with pytest.raises(BlueInputError, match=r"0 of 5.*Entrez"):
        _model_with(GENES[:5]).check_genes(bulk.var_names, report=bulk.uns["blue_input"])


def test_semicolon_with_decimal_commas():
    frame = _counts() * 1.5 + 0.25
    text = frame.to_csv(sep=";", decimal=",").encode()
    bulk = read_bulk(text, filename="eu.csv")
    np.testing.assert_allclose(bulk.X, frame.to_numpy().T)


def test_headerless_single_sample():
    frame = _counts(n_samples=1)
    text = "\n".join(f"{g}\t{v:g}" for g, v in zip(frame.index, frame["S1"])).encode()
    bulk = read_bulk(text, filename="one.txt")
    assert bulk.shape == (1, len(GENES)) and list(bulk.obs_names) == ["sample_1"]
    np.testing.assert_array_equal(bulk.X[0], frame["S1"].to_numpy())
    assert any("no header row" in w for w in bulk.uns["blue_input"]["warnings"])
