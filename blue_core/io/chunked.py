"""Large samples x genes inputs read in sample chunks with bounded memory (the archive-scale path's reader).

Layouts (:func:`open_bulk`):

* **h5ad** (AnnData, samples x genes; opened backed, dense or sparse ``X``);
* **HDF5, ARCHS4 layout**: ``data/expression`` (genes x samples, counts), ``meta/genes/symbol`` (or
  ``meta/genes/gene_symbol``) and ``meta/samples/geo_accession`` (or ``meta/samples/sample``);
* **zarr** folder written by ``anndata.AnnData.write_zarr`` or this project's benchmarks (samples x genes);
* **CSV/TSV, samples x genes** (first column = sample ID; ``.gz`` too), read by row chunks. A genes x samples text
  table cannot be streamed by sample: convert it (to h5ad) first.

The gene axis is harmonized once (:func:`~blue_core.io.genes.harmonize_gene_ids`); :func:`column_plan` maps the
wanted genes to the source columns that sum into them (duplicated symbols are summed per chunk).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import BlueInputError

__all__ = ["ChunkedBulk", "ColumnPlan", "open_bulk", "column_plan", "STREAM_SUFFIXES"]

#: File endings :func:`open_bulk` reads.
STREAM_SUFFIXES = (".h5ad", ".h5", ".hdf5", ".zarr", ".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")


@dataclass
class ChunkedBulk:
    """A samples x genes source read in sample chunks.

    Attributes
    ----------
    path
        The file or folder.
    samples
        Sample IDs, shape (n_samples,).
    genes
        Harmonized gene symbols of the source's columns, shape (n_columns,) (duplicates possible: summed).
    layout
        ``"h5ad"``, ``"archs4"``, ``"zarr"`` or ``"csv"``.
    """

    path: Path
    samples: list[str]
    genes: list[str]
    layout: str
    _reader: Any = field(default=None, repr=False)

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.samples)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a dense float64 array, shape (stop - start, n_columns).

        Returns
        -------
        numpy.ndarray
            The values as stored (linear scale expected).
        """
        return np.asarray(self._reader(start, stop), dtype=np.float64)

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` of each chunk of at most ``chunk_size`` samples."""
        for start in range(0, self.n_samples, chunk_size):
            yield start, min(start + chunk_size, self.n_samples)


def _harmonize(names: Sequence[str]) -> list[str]:
    """Current symbols of a file's gene axis (:func:`~blue_core.io.genes.harmonize_gene_ids`; "" where dropped)."""
    from .genes import harmonize_gene_ids

    symbols, _ = harmonize_gene_ids([str(n) for n in names])
    return [s if s is not None else "" for s in symbols]


def open_bulk(path: str | os.PathLike) -> ChunkedBulk:
    """Open a large samples x genes input for chunked reading (layouts in the module docstring).

    Returns
    -------
    ChunkedBulk
        Sample IDs, harmonized genes and a reader of row ranges; nothing but the axes is loaded.

    Raises
    ------
    BlueInputError
        Missing file, unsupported layout, or a text table with genes in rows.
    """
    path = Path(path)
    if not path.exists():
        raise BlueInputError(f"{path} does not exist: check the path.")
    name = path.name.lower()
    if name.endswith(".h5ad"):
        from .hdf5 import read_h5ad

        adata = read_h5ad(path, backed="r")

        def read_rows(start: int, stop: int) -> np.ndarray:
            block = adata.X[start:stop]
            return block.toarray() if hasattr(block, "toarray") else np.asarray(block)

        return ChunkedBulk(path, [str(s) for s in adata.obs_names], _harmonize(adata.var_names), "h5ad", read_rows)
    if name.endswith((".h5", ".hdf5")):
        from .hdf5 import open_hdf5

        handle = open_hdf5(path)
        try:
            matrix = handle["data/expression"]
            genes_ds = next(handle[k] for k in ("meta/genes/symbol", "meta/genes/gene_symbol") if k in handle)
            samples_ds = next(handle[k] for k in ("meta/samples/geo_accession", "meta/samples/sample") if k in handle)
        except (KeyError, StopIteration):
            handle.close()
            raise BlueInputError(
                f"{path.name} is not in the supported HDF5 layout: data/expression (genes x samples), "
                "meta/genes/symbol and meta/samples/geo_accession (ARCHS4). Convert it to h5ad instead."
            ) from None
        genes = [g.decode() if isinstance(g, bytes) else str(g) for g in genes_ds[()]]
        samples = [s.decode() if isinstance(s, bytes) else str(s) for s in samples_ds[()]]
        if matrix.shape != (len(genes), len(samples)):
            handle.close()
            raise BlueInputError(f"{path.name}: data/expression is {matrix.shape}, but there are {len(genes)} genes and "
                                 f"{len(samples)} samples; the matrix must be genes x samples.")
        return ChunkedBulk(path, samples, _harmonize(genes), "archs4", lambda a, b: matrix[:, a:b].T)
    if name.endswith(".zarr"):
        import zarr

        root = zarr.open_group(str(path), mode="r")
        try:
            matrix = root["X"]
            samples = [str(s) for s in root["obs_names"][:]]
            genes = [str(g) for g in root["var_names"][:]]
        except KeyError:
            raise BlueInputError(f"{path.name}: a zarr input needs arrays X (samples x genes), obs_names and "
                                 "var_names.") from None
        return ChunkedBulk(path, samples, _harmonize(genes), "zarr", lambda a, b: matrix[a:b])
    if name.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")):
        sep = "," if ".csv" in name else "\t"
        header = pd.read_csv(path, sep=sep, nrows=0)
        ids = pd.read_csv(path, sep=sep, usecols=[0]).iloc[:, 0].astype(str).tolist()
        columns = [str(c) for c in header.columns[1:]]
        from .genes import gene_like_fraction

        if gene_like_fraction(ids[:500]) > 0.5 and gene_like_fraction(columns[:500]) < 0.5:
            raise BlueInputError(f"{path.name} has genes in rows: a text table can be streamed only with samples in "
                                 "rows. Transpose it, or convert it to h5ad, then run again.")

        position: dict[str, Any] = {"reader": None, "next": 0, "buffer": None}

        def read_csv(start: int, stop: int) -> np.ndarray:
            # Sequential chunks (the streaming loop) continue one pass over the file; any other range reopens it.
            if position["reader"] is None or start != position["next"]:
                position["reader"] = pd.read_csv(path, sep=sep, index_col=0, chunksize=max(stop - start, 1),
                                                 skiprows=range(1, start + 1))
                position["buffer"] = None
            parts, need = [], stop - start
            while need > 0:
                block = position["buffer"] if position["buffer"] is not None else next(position["reader"])
                position["buffer"] = None
                values = block.to_numpy(dtype=np.float64)
                parts.append(values[:need])
                if len(values) > need:
                    position["buffer"] = block.iloc[need:]
                need -= len(values[:need])
            position["next"] = stop
            return np.vstack(parts)

        return ChunkedBulk(path, ids, _harmonize(columns), "csv", read_csv)
    raise BlueInputError(f"{path.name}: streaming reads {', '.join(STREAM_SUFFIXES)}; convert the file to h5ad.")


@dataclass(frozen=True)
class ColumnPlan:
    """Which source columns make each wanted gene (see :func:`column_plan`).

    Attributes
    ----------
    genes
        The wanted genes the source has, in the wanted order, shape (n_present,).
    single, single_columns
        Positions in ``genes`` of the genes one source column makes, and those columns.
    multi
        ``(position in genes, source columns)`` of the genes several columns sum into (duplicated symbols).
    """

    genes: list[str]
    single: np.ndarray
    single_columns: np.ndarray
    multi: list[tuple[int, np.ndarray]]

    def frame(self, source: ChunkedBulk, start: int, stop: int) -> pd.DataFrame:
        """Rows ``start:stop`` of ``source`` over :attr:`genes` (checked finite), samples x genes float64.

        Returns
        -------
        pandas.DataFrame
            Index: the chunk's sample IDs; columns: :attr:`genes`.
        """
        from .units import check_finite

        values = source.read(start, stop)
        check_finite(values, f"{source.path.name} (samples {start}-{stop})")
        matrix = np.empty((stop - start, len(self.genes)))
        matrix[:, self.single] = values[:, self.single_columns]
        for position, columns in self.multi:
            matrix[:, position] = values[:, columns].sum(axis=1)
        return pd.DataFrame(matrix, index=source.samples[start:stop], columns=self.genes)


def column_plan(source: ChunkedBulk, genes: Sequence[str]) -> ColumnPlan:
    """Map wanted ``genes`` to the source's columns (harmonized symbols; duplicates summed).

    Returns
    -------
    ColumnPlan
        Only the genes the source has, in the order of ``genes``.
    """
    positions: dict[str, list[int]] = {}
    for j, symbol in enumerate(source.genes):
        if symbol:
            positions.setdefault(symbol, []).append(j)
    present = [g for g in dict.fromkeys(genes) if g in positions]
    single = [i for i, g in enumerate(present) if len(positions[g]) == 1]
    multi = [(i, np.asarray(positions[g])) for i, g in enumerate(present) if len(positions[g]) > 1]
    return ColumnPlan(present, np.asarray(single, dtype=int), np.asarray([positions[present[i]][0] for i in single],
                                                                         dtype=int), multi)
