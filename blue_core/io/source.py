"""Where an input's bytes come from and what they are: paths, uploads and bytes, size limits, format detection.

Every reader (:mod:`~blue_core.io.bulk`, :mod:`~blue_core.io.reference`) starts here, so the same ceilings
(:class:`InputLimits`: decompressed size, memory budget) protect the server whatever the input is.
"""

from __future__ import annotations

import gzip
import io as _io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

import numpy as np

from ..exceptions import BlueInputError

__all__ = ["BulkSource", "InputLimits", "load_source", "detect_format", "h5ad_matrix_info", "h5ad_read_bytes",
           "size_refusal", "streaming_hint", "TEXT_MEMORY_FACTOR", "XLSX_MEMORY_FACTOR"]

#: Peak memory of parsing a text table, per byte of (decompressed) text: measured 5.5 for a 52 MB
#: genes x samples CSV (bench/results/security.md, case 11; 7.1 before the parser kept bytes instead of
#: a StringIO); the estimate keeps a margin for other layouts (wide tables, many annotation columns).
TEXT_MEMORY_FACTOR = 12
#: Peak memory of openpyxl per byte of uncompressed sheet XML (estimate with margin).
XLSX_MEMORY_FACTOR = 10

BulkSource = Union[str, os.PathLike, bytes, bytearray, IO[bytes], Any]


@dataclass(frozen=True)
class InputLimits:
    """Ceilings that keep one oversized or malicious input from exhausting a shared server's memory.

    Parameters
    ----------
    max_decompressed_bytes
        Largest growth of a compressed input, in bytes: what gzip, the parts of an .xlsx or HDF5's compressed
        (or unallocated) datasets expand to beyond the bytes stored. Decompression streams and stops at this
        ceiling; an uncompressed file is never held to it (its size is judged by the memory budget).
        Environment: ``BLUE_MAX_DECOMPRESSED_MB``. Default 500 MB (a text table that large needs about 6 GB to
        parse, the default budget).
    memory_budget_bytes
        Largest estimated memory to read one input, in bytes: an input whose declared size or shape
        (text length, .xlsx sheet size, .h5ad matrix shape) needs more is refused before anything is
        allocated. Environment: ``BLUE_MEMORY_BUDGET_MB``. Default 6,000 MB.
    """

    max_decompressed_bytes: int = 500_000_000
    memory_budget_bytes: int = 6_000_000_000

    @classmethod
    def from_env(cls) -> InputLimits:
        """Limits from ``BLUE_MAX_DECOMPRESSED_MB`` / ``BLUE_MEMORY_BUDGET_MB`` (defaults where unset)."""
        values = {}
        for field, env in (("max_decompressed_bytes", "BLUE_MAX_DECOMPRESSED_MB"),
                           ("memory_budget_bytes", "BLUE_MEMORY_BUDGET_MB")):
            raw = os.environ.get(env)
            if raw:
                try:
                    values[field] = int(float(raw) * 1e6)
                except ValueError:
                    raise BlueInputError(f"{env}={raw!r} is not a number of megabytes; set e.g. {env}=2000.") from None
        return cls(**values)

    def check_memory(self, estimate: float, name: str, what: str) -> None:
        """Raise when reading needs an estimated ``estimate`` bytes, more than the budget."""
        if estimate > self.memory_budget_bytes:
            raise BlueInputError(
                f"{name}: {what} would need about {estimate / 1e9:.1f} GB of memory to read, more than this "
                f"server's budget of {self.memory_budget_bytes / 1e9:.1f} GB per input. Split the samples into "
                "several files, keep only the genes you need, or (on your own machine) raise the budget with "
                "BLUE_MEMORY_BUDGET_MB."
            )


def _gunzip(data: bytes, name: str, limits: InputLimits) -> bytes:
    """Decompress gzip data by streaming, stopping at ``limits.max_decompressed_bytes``."""
    ceiling = limits.max_decompressed_bytes
    try:
        with gzip.GzipFile(fileobj=_io.BytesIO(data)) as handle:
            out = handle.read(ceiling + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise BlueInputError(f"{name} looks gzip-compressed but cannot be decompressed ({err}). Re-export the file.") from None
    if len(out) > ceiling:
        raise BlueInputError(
            f"{name} decompresses to more than {ceiling / 1e6:,.0f} MB (from {len(data) / 1e6:,.1f} MB compressed), "
            "the most this server reads from one file. Split the samples into several files or keep only the "
            "genes you need; on your own machine the ceiling is set with BLUE_MAX_DECOMPRESSED_MB."
        )
    return out


# --------------------------------------------------------------------------------------- source
def load_source(source: BulkSource, *, filename: str | None, limits: InputLimits) -> tuple[bytes, str]:
    """The raw bytes and display name of a path, a cohort folder, bytes or a binary file-like.

    A path larger than ``limits.memory_budget_bytes`` is refused before it is read (with the streaming command
    when its format streams: :func:`streaming_hint`).

    Returns
    -------
    tuple of (bytes, str)
        The file's bytes (still compressed, if it was) and the name used in messages.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            cohort = path / "bulk.csv.gz"
            if not cohort.is_file():
                raise BlueInputError(
                    f"{path} is a folder without a bulk.csv.gz. Pass the expression file itself "
                    "(CSV/TSV/TXT, .gz, XLSX or h5ad), or a sample-cohort folder that holds bulk.csv.gz."
                )
            path, name = cohort, filename or f"{path.name}/{cohort.name}"
        elif not path.is_file():
            raise BlueInputError(f"File not found: {path}. Check the path and the file name.")
        else:
            name = filename or path.name
        size = path.stat().st_size
        if size > limits.memory_budget_bytes:
            raise BlueInputError(
                f"{name} is {size / 1e6:,.0f} MB, more than the memory budget of "
                f"{limits.memory_budget_bytes / 1e6:,.0f} MB for reading one input. " + streaming_hint(path)
                + "Or split the samples into several files, or (on your own machine) raise BLUE_MEMORY_BUDGET_MB."
            )
        return path.read_bytes(), name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), filename or "<bytes>"
    if hasattr(source, "getvalue"):
        data = source.getvalue()
    elif hasattr(source, "read"):
        data = source.read()
    else:
        raise BlueInputError(
            f"Cannot read input of type {type(source).__name__}. Pass a file path, bytes or an open binary file."
        )
    if isinstance(data, str):
        data = data.encode("utf-8")
    name = filename or str(getattr(source, "name", "") or "<upload>")
    return bytes(data), os.path.basename(name)


def detect_format(data: bytes, *, name: str, limits: InputLimits) -> tuple[str, bytes]:
    """The format of an input's bytes, from its magic bytes first and its name second; gzip is unwrapped.

    Decompression stops at ``limits.max_decompressed_bytes``; an empty file or an old .xls is refused.

    Returns
    -------
    tuple of (str, bytes)
        ``"text"``, ``"xlsx"`` or ``"h5ad"``, and the (decompressed) payload.
    """
    lower = name.lower()
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, name, limits)
        lower = lower.removesuffix(".gz")
    if not data.strip():
        raise BlueInputError(f"{name} is empty. Export the expression table again (genes x samples with a header row).")
    if data[:8] == b"\x89HDF\r\n\x1a\n" or lower.endswith(".h5ad"):
        return "h5ad", data
    if data[:4] == b"PK\x03\x04" or lower.endswith((".xlsx", ".xlsm")):
        return "xlsx", data
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" or lower.endswith(".xls"):
        raise BlueInputError(f"{name} is an old Excel .xls file. Save it as .xlsx or CSV and load it again.")
    return "text", data


def h5ad_matrix_info(data: bytes | str | os.PathLike, *, name: str, limits: InputLimits
                     ) -> tuple[str, tuple[int, int], int, np.dtype]:
    """Inspect an h5ad's expression matrix without reading it: (key, shape, stored values, dtype).

    ``data`` is the file's bytes or its path. ``key`` is ``"layers/counts"`` when present, else ``"X"``. Raises a
    clear error when the file is not HDF5, has no matrix (``X`` is None) or a non-numeric one, or when its datasets
    would grow by more than the ceiling once read: declared bytes beyond the bytes stored (HDF5 compression or
    unallocated chunks can hide a bomb as well as gzip; an uncompressed dataset does not grow).

    Returns
    -------
    tuple
        ``(key, (n_rows, n_cols), n_stored_values, dtype)``.
    """
    import h5py

    from .hdf5 import open_hdf5

    try:
        with open_hdf5(data, name=name) as handle:
            key = "layers/counts" if "layers" in handle and "counts" in handle["layers"] else "X"
            if key not in handle:
                raise BlueInputError(
                    f"{name} has no expression matrix: X is empty (None) and there is no layers['counts']. Put the "
                    "expression values in adata.X (or adata.layers['counts']) and save the file again."
                )
            declared = [0]

            def count(_: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    size = int(obj.size) * max(int(obj.dtype.itemsize), 8 if obj.dtype.kind == "O" else 1)
                    declared[0] += max(size - int(obj.id.get_storage_size()), 0)

            handle.visititems(count)
            if declared[0] > limits.max_decompressed_bytes:
                raise BlueInputError(
                    f"{name}: its datasets grow by {declared[0] / 1e6:,.0f} MB once decompressed, more than the "
                    f"{limits.max_decompressed_bytes / 1e6:,.0f} MB a compressed file may grow by. Save it without "
                    "compression, split the data into several files, or raise BLUE_MAX_DECOMPRESSED_MB on your own "
                    "machine."
                )
            node = handle[key]
            if isinstance(node, h5py.Dataset):
                shape, n_values, dtype = tuple(node.shape), int(np.prod(node.shape)), node.dtype
            else:
                encoding = node.attrs.get("encoding-type", "")
                if "data" not in node or "shape" not in node.attrs:
                    raise BlueInputError(
                        f"{name}: {key} is a {encoding or 'group'} that BLUE cannot read as a matrix. Store a dense "
                        "or CSR/CSC sparse numeric matrix in adata.X."
                    )
                shape, n_values, dtype = tuple(int(v) for v in node.attrs["shape"]), int(node["data"].shape[0]), node["data"].dtype
    except BlueInputError:
        raise
    except Exception as err:  # h5py raises many types for malformed files
        raise BlueInputError(f"{name} could not be read as an AnnData .h5ad file ({err}). Re-save it with anndata.") from None
    if len(shape) != 2:
        raise BlueInputError(f"{name}: {key} has shape {shape}; an expression matrix has two axes (samples x genes).")
    if dtype.kind not in "fiub":
        raise BlueInputError(
            f"{name}: {key} holds {'text' if dtype.kind in 'SUO' else dtype} values, not numbers. Store the numeric "
            "expression values in adata.X (annotations belong in obs/var) and save the file again."
        )
    return key, shape, n_values, dtype


def h5ad_read_bytes(shape: tuple[int, int], file_bytes: int) -> float:
    """Estimated memory of reading an h5ad matrix of ``shape``: the dense float64 result, one working copy, the file.

    Returns
    -------
    float
        Bytes.
    """
    return 2.0 * 8 * shape[0] * shape[1] + file_bytes


def _gzip_size(path: Path) -> float:
    """Decompressed size of a gzip file from its trailer (mod 2**32; a wrapped value counts as unbounded)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(size - 4, 0))
        isize = int.from_bytes(handle.read(4), "little")
    return float("inf") if isize < size else float(isize)


def size_refusal(path: str | os.PathLike, *, limits: InputLimits | None = None) -> str | None:
    """Why reading ``path`` whole into memory would be refused for its size (None when it fits), read from its size,
    gzip trailer or h5ad header only: the rule the readers apply, asked before reading.

    Returns
    -------
    str or None
        The reason, e.g. "reading it needs about 8.1 GB, more than the memory budget of 6.0 GB".
    """
    limits = limits or InputLimits.from_env()
    path = Path(path)
    if not path.is_file():
        return None
    lower, size = path.name.lower(), path.stat().st_size
    budget = f"the memory budget of {limits.memory_budget_bytes / 1e9:.1f} GB (BLUE_MEMORY_BUDGET_MB)"
    if lower.endswith(".h5ad"):
        try:
            _, shape, _, _ = h5ad_matrix_info(path, name=path.name, limits=limits)
        except BlueInputError as err:
            return str(err)
        need = h5ad_read_bytes(shape, size)
    elif lower.endswith(".gz"):
        text = _gzip_size(path)
        if text > limits.max_decompressed_bytes:
            return (f"it decompresses to more than {limits.max_decompressed_bytes / 1e6:,.0f} MB "
                    "(BLUE_MAX_DECOMPRESSED_MB)")
        need = text * TEXT_MEMORY_FACTOR
    elif lower.endswith((".csv", ".tsv", ".txt")):
        need = size * TEXT_MEMORY_FACTOR
    else:
        need = size
    if need > limits.memory_budget_bytes:
        return f"reading it needs about {need / 1e9:.1f} GB, more than {budget}"
    return None


def streaming_hint(path: str | os.PathLike | None) -> str:
    """The sentence that points a too-large file to the archive-scale path, when its format can stream ("" otherwise).

    Returns
    -------
    str
        E.g. "This format can be read chunk by chunk: blue deconvolve big.h5ad --model NAME --out DIR streams it on
        its own (Python: blue_core.deconvolve_chunked). "
    """
    from .chunked import STREAM_SUFFIXES

    if path is None or not str(path).lower().endswith(STREAM_SUFFIXES):
        return ""
    return (f"This format can be read chunk by chunk: blue deconvolve {Path(path).name} --model NAME --out DIR "
            "streams it on its own (Python: blue_core.deconvolve_chunked). ")
