"""Reading a bulk expression table (CSV/TSV/TXT, gzipped or not, XLSX, h5ad) into BLUE's bulk AnnData.

:func:`read_bulk` turns a CSV/TSV/TXT (optionally gzipped), XLSX or h5ad file into the BLUE bulk
object (AnnData, samples x genes, dense float64, linear scale, current human symbols) and records
what it found and did in ``uns["blue_input"]`` (:mod:`~blue_core.io.report` words it). Single-cell
references are read by :mod:`~blue_core.io.reference`.

Decisions (documented for users in the error / warning messages):

- **Orientation** is decided from identifiers first (which axis holds gene-like names: Ensembl IDs,
  approved symbols), and only when that is inconclusive from the shape (more genes than samples).
  A single-sample file therefore reads correctly either way round.
- **Annotation columns** in a genes x samples table (e.g. TARGET's ``symbol``, ``hgnc_id``,
  ``chrom``) are recognised by name or by being mostly non-numeric and dropped; a ``symbol``-like
  column is used to name Ensembl IDs that the shipped table cannot name.
- **Units**: all-integer values are ``"counts"``; other non-negative values are ``"relative"``
  (TPM / CPM / normalised). Log-scale input is converted back and a
  :class:`~blue_core.exceptions.LogScaleInputWarning` says how: non-negative, non-integer values
  with max <= 50 are taken as log2(x + 1) -> ``2**x - 1``; values with a repeated negative floor
  (log2 CPM, e.g. TARGET's -7.17) -> ``2**x`` with the floor (= zero counts) set to 0.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import logging
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import BlueInputError, BlueWarning, LogScaleInputWarning
from . import genes as _genes
from .source import (TEXT_MEMORY_FACTOR, XLSX_MEMORY_FACTOR, BulkSource, InputLimits, detect_format,
                     h5ad_matrix_info, h5ad_read_bytes, load_source)
from .units import check_finite, convert_units

__all__ = ["read_bulk", "TEXT_MEMORY_FACTOR", "XLSX_MEMORY_FACTOR"]


logger = logging.getLogger(__name__)


_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")
_ANNOTATION_NAMES = {
    "symbol", "gene_symbol", "hgnc_symbol", "gene_name", "genename", "name", "hgnc_id", "hgnc",
    "chrom", "chr", "chromosome", "seqnames", "description", "desc", "biotype", "gene_type", "gene_biotype",
    "entrez", "entrez_id", "entrezid", "gene_id", "ensembl", "ensembl_id", "ensembl_gene_id", "length",
    "gene_length", "start", "end", "strand", "width", "location", "band", "type",
}
_DECIMAL_COMMA_RE = re.compile(r"(?:^|[;\t])-?\d+,\d+(?:[;\t]|$)", re.MULTILINE)
_SYMBOL_COLUMNS = {"symbol", "gene_symbol", "hgnc_symbol", "gene_name", "genename"}


# --------------------------------------------------------------------------------------- limits


def _utf16_encoding(data: bytes) -> str | None:
    """``"utf-16"`` (with BOM), ``"utf-16-le"`` / ``"utf-16-be"`` (without), or None."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    head = data[:4096]
    if len(head) >= 16:
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "utf-16-be"
    return None


def _decode_text(data: bytes, name: str) -> str:
    utf16 = _utf16_encoding(data)
    if utf16:
        try:
            return data.decode(utf16)
        except UnicodeDecodeError as err:
            raise BlueInputError(
                f"{name} looks like UTF-16 text (Excel's \"Unicode Text\") but cannot be decoded ({err.reason}). "
                "Save it from Excel as \"CSV UTF-8 (comma delimited)\" instead."
            ) from None
    head = data[:65536]
    control = sum(b < 9 or 13 < b < 32 for b in head)
    if b"\x00" in head or control > 0.01 * len(head):
        raise BlueInputError(
            f"{name} is a binary file, not a text table. BLUE reads CSV/TSV/TXT (optionally .gz), "
            "XLSX and h5ad; R (.rds/.rda) or Python pickle files must be exported as CSV first."
        )
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise BlueInputError(f"{name} cannot be decoded as text. Save it as UTF-8 CSV.")  # pragma: no cover


# --------------------------------------------------------------------------------------- parsing
@contextlib.contextmanager
def _wide_fields() -> Iterator[None]:
    """Let the csv module read whole-transcriptome lines (its default field limit is 128 KiB).

    A samples x genes header of 60,000 genes is ~500 kB, and while the delimiter is being guessed
    a wrong candidate reads that whole line as one field.
    """
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, min(sys.maxsize, 2**31 - 1)))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _head_lines(text: str, n: int) -> list[str]:
    """The first ``n`` lines of ``text`` without splitting the whole text."""
    out: list[str] = []
    start = 0
    while len(out) < n and start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        out.append(text[start:end].rstrip("\r"))
        start = end + 1
    return out


def _sniff_delimiter(text: str, name: str) -> str:
    with _wide_fields():
        return _sniff(text, name)


def _sniff(text: str, name: str) -> str:
    lines = [ln for ln in _head_lines(text, 50) if ln.strip() and not ln.startswith("#")]
    if text.startswith("#1.") and len(lines) > 2:  # GCT
        lines = lines[1:]
    best, best_score = None, 0
    for delim in ("\t", ",", ";", "|"):
        counts = [len(fields) - 1 for fields in csv.reader(lines, delimiter=delim)]
        if min(counts) == 0:
            continue
        consistent = sum(c == counts[-1] for c in counts) / len(counts)
        score = consistent * 1000 + min(counts)
        if consistent >= 0.8 and score > best_score:
            best, best_score = delim, score
    if best is not None:
        return best
    counts = [len(ln.split()) for ln in lines]
    if min(counts) > 1 and len(set(counts[1:])) == 1:
        return r"\s+"
    raise BlueInputError(
        f"{name} has only one column: no tab, comma, semicolon or space delimiter was found. Save the table "
        "as CSV (comma) or TSV (tab) with genes as rows and samples as columns (first column = gene)."
    )


def _parse_text(text: str, name: str) -> tuple[list[str], pd.DataFrame]:
    """Return (header, body) where body has one column per header field (first = row identifiers)."""
    delim = _sniff_delimiter(text, name)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if text.startswith("#1.") and len(lines) > 1:  # GCT: second line holds the dimensions
        lines = lines[1:]
    if delim == r"\s+":
        header = lines[0].split()
    else:
        with _wide_fields():
            header = next(csv.reader([lines[0]], delimiter=delim))
    header = [h.strip() for h in header]
    if len(lines) < 2:
        return header, pd.DataFrame(columns=range(len(header)))
    if delim == r"\s+":
        n_body = len(lines[1].split())
    else:
        with _wide_fields():
            n_body = len(next(csv.reader([lines[1]], delimiter=delim)))
    if n_body == len(header) + 1:  # R write.table: no header field for the row names
        header = ["gene"] + header
    # European CSV: semicolon-delimited with decimal commas ("1,5")
    decimal = "," if delim in (";", "\t") and _DECIMAL_COMMA_RE.search("\n".join(lines[1:20])) else "."
    body_bytes = "\n".join(lines[1:]).encode("utf-8")  # bytes: a StringIO would hold 4 bytes per character
    del lines
    try:
        body = pd.read_csv(
            _io.BytesIO(body_bytes), sep=delim, encoding="utf-8", header=None, names=range(len(header)),
            engine="python" if delim == r"\s+" else "c", skipinitialspace=True, comment=None, decimal=decimal,
        )
    except (pd.errors.ParserError, ValueError) as err:
        raise BlueInputError(
            f"{name} could not be parsed as a table ({err}). Check that every row has the same number of "
            "fields and that the delimiter is consistent."
        ) from None
    return header, body


def _check_xlsx_size(data: bytes, name: str, limits: InputLimits) -> None:
    """Refuse a workbook whose parts inflate past the ceiling or the memory budget (zip bomb)."""
    try:
        with zipfile.ZipFile(_io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as err:
        raise BlueInputError(f"{name} could not be read as an Excel .xlsx workbook ({err}). Save it again as .xlsx or CSV.") from None
    if inflated > limits.max_decompressed_bytes:
        raise BlueInputError(
            f"{name}: the workbook decompresses to {inflated / 1e6:,.0f} MB, more than the "
            f"{limits.max_decompressed_bytes / 1e6:,.0f} MB read from one file. Save the table as CSV (gzip it if large) "
            "or split it into several files."
        )
    limits.check_memory(inflated * XLSX_MEMORY_FACTOR, name, f"the workbook ({inflated / 1e6:,.0f} MB uncompressed)")


def _uncached_formulas(data: bytes) -> int:
    """Number of formula cells of the first sheet (read-only scan) -- called when values are missing."""
    import openpyxl

    book = openpyxl.load_workbook(_io.BytesIO(data), read_only=True, data_only=False)
    try:
        sheet = book.worksheets[0]
        return sum(
            1 for row in sheet.iter_rows(values_only=True) for v in row if isinstance(v, str) and v.startswith("=")
        )
    finally:
        book.close()


def _parse_xlsx(data: bytes, name: str, limits: InputLimits) -> tuple[list[str], pd.DataFrame]:
    _check_xlsx_size(data, name, limits)
    try:
        frame = pd.read_excel(_io.BytesIO(data), sheet_name=0, header=None, engine="openpyxl")
    except Exception as err:  # openpyxl raises many types for corrupted files
        raise BlueInputError(f"{name} could not be read as an Excel .xlsx workbook ({err}). Save it again as .xlsx or CSV.") from None
    if frame.isna().to_numpy().any():
        n_formulas = _uncached_formulas(data)
        if n_formulas:
            raise BlueInputError(
                f"{name}: {n_formulas:,} cells of the first sheet hold formulas whose results were never saved (the "
                "file was written by a program that does not calculate, or saved without recalculating), so their "
                "values are missing. Open the file in Excel or LibreOffice and save it again (this stores the "
                "results), or export the sheet as CSV."
            )
    frame = frame.dropna(how="all").dropna(axis=1, how="all")
    if frame.shape[0] < 2:
        raise BlueInputError(f"{name}: the first sheet holds no data rows. Put the expression table on the first sheet.")
    header = ["" if pd.isna(h) else str(h).strip() for h in frame.iloc[0]]
    body = frame.iloc[1:].reset_index(drop=True)
    body.columns = range(len(header))
    return header, body


def _numeric_frame(body: pd.DataFrame, labels: Sequence[str], name: str, axis_word: str) -> pd.DataFrame:
    """Convert every column to float; raise on non-numeric cells, naming one."""
    if all(dtype.kind in "fiub" for dtype in body.dtypes):  # all numeric already: one block, no per-column loop
        frame = pd.DataFrame(body.to_numpy(dtype=np.float64), columns=pd.Index(list(labels)), copy=False)
        return frame
    out = {}
    for col, label in zip(body.columns, labels):
        series = body[col]
        if series.dtype == object:
            converted = pd.to_numeric(series.astype(str).str.strip().replace({"": np.nan}), errors="coerce")
            bad = converted.isna() & series.notna() & (series.astype(str).str.strip() != "")
            bad &= ~series.astype(str).str.strip().str.lower().isin({"na", "nan", "inf", "-inf", "null", "none"})
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise BlueInputError(
                    f"{name}: non-numeric value {series.iloc[row]!r} in {axis_word} {label!r} (data row {row + 1}). "
                    "Expression values must be numbers; remove text cells or annotation columns other than the gene column."
                )
            series = converted
        out[label] = series.astype(np.float64)
    return pd.DataFrame(out)


def _is_annotation(label: str, series: pd.Series) -> bool:
    if label.strip().lower() in _ANNOTATION_NAMES:
        return True
    if series.dtype != object:
        return False
    converted = pd.to_numeric(series, errors="coerce")
    return converted.isna().mean() > 0.5 and series.notna().mean() > 0.5


# --------------------------------------------------------------------------------------- orientation
def _orient(header: list[str], row_ids: list[str], n_rows: int, n_cols: int) -> str:
    row_like = _genes.gene_like_fraction(row_ids[:2000])
    col_like = _genes.gene_like_fraction(header[:2000])
    if max(row_like, col_like) >= 0.2 and abs(row_like - col_like) >= 0.1:
        return "genes_x_samples" if row_like > col_like else "samples_x_genes"
    return "genes_x_samples" if n_rows >= n_cols else "samples_x_genes"


# --------------------------------------------------------------------------------------- public
def _bulk_from_table(fmt: str, held: list[Any], name: str, limits: InputLimits, report_warnings: list[str],
                     dropped: list[str]) -> tuple[np.ndarray, list[str], list[str], str, list[str] | None]:
    """A text or xlsx table as ``(matrix samples x genes, sample IDs, gene IDs, orientation, fallback symbols)``:
    parsed, header and ID column fixed, oriented, annotation columns dropped (recorded in ``dropped`` and
    ``report_warnings``). ``held`` is a one-item list with the file's payload, emptied here (no other reference
    keeps the bytes alive while the table is parsed)."""
    fallback_symbols: list[str] | None = None
    payload = held.pop()
    if fmt == "xlsx":
        header, body = _parse_xlsx(payload, name, limits)
    else:
        limits.check_memory(len(payload) * TEXT_MEMORY_FACTOR, name, f"this {len(payload) / 1e6:,.0f} MB table")
        text = _decode_text(payload, name)
        del payload
        header, body = _parse_text(text, name)
        del text
    if body.shape[0] == 0:
        raise BlueInputError(f"{name} has a header but no data rows. Export the full expression table.")
    if len(header) < 2:
        raise BlueInputError(
            f"{name} has only one column. Check the delimiter (comma or tab) and that samples are columns."
        )
    header, body = _fix_headerless(header, body, report_warnings)
    header, body = _pick_id_column(header, body, dropped)
    body, row_ids = _drop_unnamed_rows(body, report_warnings)
    orientation = _orient(header[1:], row_ids, body.shape[0], len(header) - 1)
    if orientation == "genes_x_samples":
        sample_cols, value_cols = [], []
        for k in range(1, len(header)):
            if _is_annotation(header[k], body[k]):
                dropped.append(header[k])
                if header[k].strip().lower() in _SYMBOL_COLUMNS and fallback_symbols is None:
                    fallback_symbols = ["" if pd.isna(v) else str(v) for v in body[k]]
            else:
                sample_cols.append(header[k])
                value_cols.append(k)
        _check_unique_samples(sample_cols, name)
        frame = _numeric_frame(body[value_cols], sample_cols, name, "sample")
        matrix = frame.to_numpy().T
        sample_ids, gene_ids = sample_cols, row_ids
    else:
        _check_unique_samples(row_ids, name)
        keep = []
        for k in range(1, len(header)):
            if body[k].dtype == object and _is_annotation("", body[k]):
                dropped.append(header[k])
            else:
                keep.append(k)
        frame = _numeric_frame(body[keep], [header[k] for k in keep], name, "gene column")
        matrix = frame.to_numpy()
        sample_ids, gene_ids = row_ids, [header[k] for k in keep]
    if dropped:
        report_warnings.append(f"ignored annotation columns: {', '.join(dropped[:10])}")
    return matrix, sample_ids, gene_ids, orientation, fallback_symbols


def _harmonise_genes(matrix: np.ndarray, gene_ids: Sequence[str], fallback_symbols: list[str] | None, name: str,
                     report_warnings: list[str]) -> tuple[np.ndarray, list[str], Any, int]:
    """Gene identifiers to current HGNC symbols (mouse refused), duplicates summed; what happened goes to
    ``report_warnings``. Returns ``(matrix, symbols, mapping, n_summed)``."""
    _genes.check_not_mouse(gene_ids, what="input")
    mapping = _genes.map_gene_ids(gene_ids, fallback=fallback_symbols)
    matrix, symbols, n_summed = _genes.sum_duplicate_genes(matrix, mapping.symbols)
    if n_summed:
        report_warnings.append(f"summed {n_summed} duplicated gene rows after mapping identifiers to symbols")
    if mapping.n_alias_mapped:
        report_warnings.append(
            f"renamed {mapping.n_alias_mapped} old gene symbols to current ones (e.g. {', '.join(mapping.alias_examples[:3])})"
        )
    recognised = _genes.gene_like_fraction(symbols[:5000])
    if recognised < 0.2:
        msg = (
            f"{name}: only {recognised:.0%} of the gene identifiers are known human genes (e.g. "
            f"{', '.join(map(str, gene_ids[:3]))}). Use human gene symbols or Ensembl gene IDs (not probe or Entrez IDs)."
        )
        warnings.warn(msg, BlueWarning, stacklevel=3)
        report_warnings.append(msg)
    if mapping.n_par_y_dropped:
        report_warnings.append(f"dropped {mapping.n_par_y_dropped} PAR-Y duplicate rows (ENSGR / _PAR_Y)")
    return matrix, symbols, mapping, n_summed


def read_bulk(
    source: BulkSource,
    *,
    filename: str | None = None,
    limits: InputLimits | None = None,
    log_base: Literal["auto", "2", "10", "e"] = "auto",
) -> "anndata.AnnData":  # noqa: F821
    """Read a bulk RNA-seq expression table into BLUE's bulk AnnData.

    Parameters
    ----------
    source
        Path to a CSV/TSV/TXT (optionally ``.gz``), XLSX or h5ad file; a sample-cohort folder holding
        ``bulk.csv.gz``; raw ``bytes``; or a binary file-like (e.g. Streamlit's ``UploadedFile``).
        Tables may be genes x samples (first column = gene) or samples x genes.
    filename
        Name used for the format (extension) and messages when ``source`` is bytes or a file-like.
    limits
        Decompression ceiling and memory budget (default :meth:`InputLimits.from_env`): larger inputs
        are refused with a message before they are decompressed further or parsed.
    log_base
        Base of log-transformed input (``log(x + 1)``, or log CPM with negative values). ``"auto"``: log2, except
        non-negative non-integer values whose maximum is below 7, which are read as log10(x + 1) (a log2 file
        would then have no gene above 128 CPM, which RNA-seq never shows); a warning always names the choice.
        Linear input is never converted.

    Returns
    -------
    anndata.AnnData
        Shape (n_samples, n_genes): ``obs_names`` = samples, ``var_names`` = unique human symbols,
        ``X`` dense float64, non-negative, linear scale (counts, TPM/CPM as given, or log input
        converted back). ``uns["blue_input"]`` is the input report (see ``DESIGN.md``).

    Raises
    ------
    BlueInputError
        Empty, binary or unparsable file; one column only; NaN/inf, negative (non-log) or non-numeric
        values; duplicated sample names; mouse genes. (Whether the genes suit a model is the model's
        decision: :meth:`~blue_core.engine.model.BlueModel.check_genes`.)

    Warns
    -----
    LogScaleInputWarning
        Log-scale input converted back to linear (the message says which transform).
    """
    import anndata

    limits = limits or InputLimits.from_env()
    data, name = load_source(source, filename=filename, limits=limits)
    fmt, payload = detect_format(data, name=name, limits=limits)
    del data
    report_warnings: list[str] = []
    dropped: list[str] = []
    fallback_symbols: list[str] | None = None

    if fmt == "h5ad":
        matrix, sample_ids, gene_ids, orientation = _bulk_from_h5ad(payload, name, limits)
        del payload
    else:
        held = [payload]  # the helper takes the only reference, so the raw bytes are freed once decoded
        del payload
        matrix, sample_ids, gene_ids, orientation, fallback_symbols = _bulk_from_table(
            fmt, held, name, limits, report_warnings, dropped)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise BlueInputError(f"{name} holds no expression values after removing annotation columns. Check the layout.")
    check_finite(matrix, name)
    matrix, units, log_msg = convert_units(matrix, name, log_base=log_base)
    if log_msg:
        warnings.warn(log_msg, LogScaleInputWarning, stacklevel=2)
        report_warnings.append(log_msg)

    matrix, symbols, mapping, n_summed = _harmonise_genes(matrix, gene_ids, fallback_symbols, name, report_warnings)

    adata = anndata.AnnData(
        X=np.ascontiguousarray(matrix, dtype=np.float64),
        obs=pd.DataFrame(index=pd.Index([str(s) for s in sample_ids])),
        var=pd.DataFrame(index=pd.Index(symbols)),
    )
    report: dict[str, Any] = {
        "source": name,
        "format": fmt,
        "n_samples": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "orientation": orientation,
        "units": units,
        "gene_id_type": mapping.id_type,
        "n_duplicates_summed": int(n_summed),
        "n_ensembl_mapped": int(mapping.n_ensembl_mapped),
        "n_alias_mapped": int(mapping.n_alias_mapped),
        "n_unmapped_ids": int(mapping.n_unmapped),
        "n_par_y_dropped": int(mapping.n_par_y_dropped),
        "gene_id_examples": [str(g) for g in list(gene_ids)[:3]],
        "dropped_columns": list(dropped),
        "warnings": report_warnings,
    }
    adata.uns["blue_input"] = report
    logger.info(
        "read %s: %d samples x %d genes (%s, %s, ids %s)", name, adata.n_obs, adata.n_vars, orientation, units, mapping.id_type
    )
    return adata


def _fix_headerless(header: list[str], body: pd.DataFrame, report_warnings: list[str]) -> tuple[list[str], pd.DataFrame]:
    """A genes x samples table without a header row: the first line is data (gene name + numbers)."""
    def is_number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    if len(header) < 2 or not all(is_number(h) for h in header[1:]) or is_number(header[0]):
        return header, body
    if _genes.gene_like_fraction([header[0]] + [str(v) for v in body[0].head(200)]) < 0.2:
        return header, body
    first = pd.DataFrame([[header[0], *[float(h) for h in header[1:]]]], columns=body.columns)
    names = ["sample_1"] if len(header) == 2 else [f"sample_{k}" for k in range(1, len(header))]
    report_warnings.append(f"no header row found: the first line is data; samples named {names[0]}..{names[-1]}")
    return ["gene", *names], pd.concat([first, body], ignore_index=True)


def _pick_id_column(header: list[str], body: pd.DataFrame, dropped: list[str]) -> tuple[list[str], pd.DataFrame]:
    """Use a later text column as the gene column when the first one is a bare row index (0, 1, 2, ...)."""
    first = [str(v).strip() for v in body[0].head(2000)]
    if _genes.gene_like_fraction(first) >= 0.2 or _genes.gene_like_fraction(header[1:2000]) >= 0.2:
        return header, body
    for k in range(1, len(header)):
        if body[k].dtype == object and _genes.gene_like_fraction([str(v).strip() for v in body[k].head(2000)]) >= 0.5:
            dropped.append(header[0] or "(row index)")
            order = [k] + [j for j in range(1, len(header)) if j != k]
            new_body = body[order]
            new_body.columns = range(len(order))
            return [header[j] for j in order], new_body
    return header, body


def _drop_unnamed_rows(body: pd.DataFrame, report_warnings: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Remove rows whose identifier (first column) is empty; return (body, identifiers)."""
    ids = body[0].astype(str).str.strip()
    empty = body[0].isna().to_numpy() | (ids == "").to_numpy()
    if empty.any():
        report_warnings.append(f"ignored {int(empty.sum())} rows without an identifier in the first column")
        body = body.loc[~empty].reset_index(drop=True)
        ids = ids[~empty]
    return body, list(ids)


def _check_unique_samples(samples: Sequence[str], name: str) -> None:
    counts = pd.Series(list(samples)).value_counts()
    dups = counts[counts > 1]
    if len(dups):
        raise BlueInputError(
            f"{name}: duplicated sample names: {', '.join(map(str, dups.index[:5]))}. Give every sample a unique name "
            "(e.g. add a replicate suffix) and load the file again."
        )


def _bulk_from_h5ad(data: bytes, name: str, limits: InputLimits) -> tuple[np.ndarray, list[str], list[str], str]:
    _, shape, _, _ = h5ad_matrix_info(data, name=name, limits=limits)
    limits.check_memory(h5ad_read_bytes(shape, len(data)), name, f"a {shape[0]:,} x {shape[1]:,} matrix")
    from .hdf5 import read_h5ad

    adata = read_h5ad(data, name=name)
    matrix = adata.layers["counts"] if "counts" in adata.layers else adata.X
    matrix = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    obs, var = [str(v) for v in adata.obs_names], [str(v) for v in adata.var_names]
    orientation = "samples_x_genes"
    if _genes.gene_like_fraction(obs[:2000]) > _genes.gene_like_fraction(var[:2000]) + 0.1:
        matrix, obs, var, orientation = matrix.T, var, obs, "genes_x_samples"
    _check_unique_samples(obs, name)
    return np.asarray(matrix, dtype=np.float64), obs, var, orientation



