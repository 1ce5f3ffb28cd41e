"""Archive scale: deconvolve cohorts that do not fit in memory, chunk by chunk, resumably, and with Dask.

Inputs (:func:`open_bulk`), read in sample chunks with bounded memory:

* **h5ad** (AnnData, samples x genes; opened backed, dense or sparse ``X``);
* **HDF5, ARCHS4 layout**: ``data/expression`` (genes x samples, counts), ``meta/genes/symbol`` (or
  ``meta/genes/gene_symbol``) and ``meta/samples/geo_accession`` (or ``meta/samples/sample``);
* **zarr** folder written by this module's benchmarks or by ``anndata.AnnData.write_zarr`` (samples x genes);
* **CSV/TSV, samples x genes** (first column = sample ID), read by row chunks. A genes x samples text table cannot
  be streamed by sample: convert it (``blue deconvolve`` in memory, or to h5ad) first.

The gene axis is harmonized once (:func:`~blue_core.io.genes.map_gene_ids`; duplicated symbols are summed per
chunk) and matched to the model once; every chunk then goes through the same
:func:`~blue_core.engine.inference.deconvolve` as an in-memory run, so the results are identical per sample. Values must
be linear (counts, TPM); the first chunk is checked and log-scale input is refused with the fix.

Outputs (:func:`deconvolve_chunked`), into a temporary sibling folder renamed when complete:
``proportions.csv`` + ``proportions.parquet`` (with ``<type>_lo/_hi`` for ensembles), ``fit.csv`` +
``fit.parquet``, and ``expression.zarr`` (samples x cell types x genes, chunked by samples; optional float16,
subsets of cell types and genes, or none). An interrupted run resumes: finished chunks are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._types import Progress
from ..exceptions import BlueInputError
from ..io.files import swap_in, write_csv
from ..io.strictjson import dumps
from ..analysis.trust import assess

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel

__all__ = ["ChunkedBulk", "open_bulk", "deconvolve_chunked", "deconvolve_dask", "StreamResult"]

logger = logging.getLogger(__name__)

_STREAMABLE = (".h5ad", ".h5", ".hdf5", ".zarr", ".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")


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
    from ..io.genes import harmonize_gene_ids

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
        from ..io.hdf5 import read_h5ad

        adata = read_h5ad(path, backed="r")

        def read_rows(start: int, stop: int) -> np.ndarray:
            block = adata.X[start:stop]
            return block.toarray() if hasattr(block, "toarray") else np.asarray(block)

        return ChunkedBulk(path, [str(s) for s in adata.obs_names], _harmonize(adata.var_names), "h5ad", read_rows)
    if name.endswith((".h5", ".hdf5")):
        from ..io.hdf5 import open_hdf5

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
        from ..io.genes import gene_like_fraction

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
    raise BlueInputError(f"{path.name}: streaming reads {', '.join(_STREAMABLE)}; convert the file to h5ad.")


def _column_plan(source: ChunkedBulk, genes: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    """For each wanted gene present in the source: the source columns that sum into it."""
    positions: dict[str, list[int]] = {}
    for j, symbol in enumerate(source.genes):
        if symbol:
            positions.setdefault(symbol, []).append(j)
    present = [g for g in genes if g in positions]
    return present, [np.asarray(positions[g]) for g in present]


def _model_genes(model: BlueModel) -> list[str]:
    """Every gene the model reads or scores its fit on (input genes, then output genes)."""
    return list(dict.fromkeys([*map(str, model.input_genes), *map(str, model.output_genes)]))


def _chunk_frame(source: ChunkedBulk, start: int, stop: int, present: list[str], plan: list[np.ndarray]) -> pd.DataFrame:
    from ..io.units import check_finite

    values = source.read(start, stop)
    check_finite(values, f"{source.path.name} (samples {start}-{stop})")
    matrix = np.stack([values[:, cols].sum(axis=1) for cols in plan], axis=1) if plan else np.zeros((stop - start, 0))
    return pd.DataFrame(matrix, index=source.samples[start:stop], columns=present)


#: Samples per chunk when none is given (the CLI's --chunk-size default too).
DEFAULT_CHUNK_SIZE = 5_000
#: Why streamed runs have no tissue checks (input_report.json, the trust summary, the CLI).
NO_TISSUE_CHECKS = ("tissue checks are not run on streamed runs (they rank every gene of every sample); the verdict "
                    "judges the fit and the ensemble spread only. For the tissue checks, deconvolve a few hundred "
                    "samples in memory (blue deconvolve FILE without --chunk-size)")


def _to_linear(frame: pd.DataFrame, log_base: str) -> pd.DataFrame:
    """A declared log base (``--log-base 2|10|e``) converts every chunk the same way: ``base**x - 1``, floored at 0
    (per-chunk auto-detection could read two chunks of one file differently, so streaming never guesses)."""
    if log_base == "auto":
        return frame
    from ..io.units import LOG_BASES

    base = LOG_BASES[log_base][0]
    return (np.power(base, frame) - 1.0).clip(lower=0.0)


def _check_linear(frame: pd.DataFrame, source: ChunkedBulk) -> None:
    """``read_bulk``'s units rule (``io.convert_units``) on a chunk: streaming takes linear values only."""
    from ..io.units import convert_units

    values = frame.to_numpy()
    if not values.size:
        return
    _, units, _ = convert_units(values, source.path.name)  # raises for negative values that are not log-scale
    if units == "log_converted":
        raise BlueInputError(f"{source.path.name}: the values look log-scale (min {values.min():.3g}, max "
                             f"{values.max():.3g}). Streaming needs linear counts or TPM: declare the base "
                             "(log_base= / --log-base 2|10|e, then every chunk is converted back the same way), or "
                             "deconvolve in memory (which detects it).")


def _quiet_deconvolve(frame: pd.DataFrame, model: BlueModel, batch_size: int):  # noqa: ANN202
    from .inference import deconvolve

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-chunk warnings are summarised once at the end
        # a chunk is not a cohort: streamed runs are never adapted (each chunk would get its own networks)
        return deconvolve(frame, model, batch_size=batch_size, adapt=False)


def _prepare_partial(partial: Path, manifest: dict[str, Any]) -> None:
    """``<out>.partial/`` for this run: kept (to resume) only when an interrupted run had the same manifest."""
    if partial.exists():
        try:
            same = json.loads((partial / "manifest.json").read_text()) == manifest
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (partial / "parts").mkdir(exist_ok=True)


def _gep_store(partial: Path, source: ChunkedBulk, model: BlueModel, keep_types: list[str], keep_genes: list[str],
               chunk_size: int, gep_dtype: str) -> Any:
    """The zarr group the GEPs are written to (reopened when resuming)."""
    import zarr

    path = partial / "expression.zarr"
    if (path / "zarr.json").exists():
        return zarr.open_group(str(path), mode="r+")
    store = zarr.open_group(str(path), mode="w")
    store.create_array("expression", shape=(source.n_samples, len(keep_types), len(keep_genes)),
                       chunks=(min(chunk_size, source.n_samples), len(keep_types), len(keep_genes)), dtype=gep_dtype)
    store.create_array("samples", data=np.asarray(source.samples, dtype=str))
    store.create_array("cell_types", data=np.asarray(keep_types, dtype=str))
    store.create_array("genes", data=np.asarray(keep_genes, dtype=str))
    store.attrs.update(units="log1p(CPM) over the model's output genes" if gep_dtype == "float16"
                       else "CPM over the model's output genes", model=model.name)
    return store


def _write_gep_block(store: Any, block: np.ndarray, start: int, stop: int, *, type_idx: list[int],
                     gene_idx: list[int], full: tuple[int, int], gep_dtype: str) -> None:
    """One chunk's GEPs ``(chunk, K, G)`` into the store; subsets indexed only when asked (no copies otherwise)."""
    if len(type_idx) != full[0]:
        block = block[:, type_idx]
    if len(gene_idx) != full[1]:
        block = block[:, :, gene_idx]
    if gep_dtype == "float16":  # CPM reaches 1e6, past float16's 65,504: store log1p(CPM) instead
        block = np.log1p(block)
    store["expression"][start:stop] = block if block.dtype == np.dtype(gep_dtype) else block.astype(gep_dtype)


@dataclass
class StreamResult:
    """What :func:`deconvolve_chunked` wrote.

    Attributes
    ----------
    directory
        The finished output folder.
    n_samples, n_chunks, n_resumed
        Samples, chunks, and chunks skipped because an interrupted run had finished them.
    files
        Names of the files written.
    verdicts
        Samples per verdict (``ok`` / ``caution``; streamed runs have no tissue checks, so no ``wrong input``).
    """

    directory: Path
    n_samples: int
    n_chunks: int
    n_resumed: int
    files: list[str]
    verdicts: dict[str, int] = field(default_factory=dict)


def deconvolve_chunked(
    source: ChunkedBulk | str | os.PathLike,
    model: BlueModel,
    *,
    out: str | os.PathLike,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    gep: bool = True,
    gep_dtype: Literal["float32", "float16"] = "float32",
    cell_types: Sequence[str] | None = None,
    genes: Sequence[str] | None = None,
    overwrite: bool = False,
    batch_size: int = 256,
    log_base: Literal["auto", "2", "10", "e"] = "auto",
    progress: Progress | None = None,
    fail_after_chunks: int | None = None,
) -> StreamResult:
    """Deconvolve a large cohort chunk by chunk with bounded memory; resumable; never half-written.

    Parameters
    ----------
    source
        A :class:`ChunkedBulk` or a path for :func:`open_bulk`.
    model
        The model.
    out
        Output folder (must be absent or empty, unless ``overwrite``).
    chunk_size
        Samples per chunk. Peak memory grows with it: about 2.5 x chunk_size x cell types x output genes x 4
        bytes (the GEPs of one chunk and their copies), e.g. ~1 GB for 5,000 samples x 7 types x 1,307 genes.
    gep
        Write the GEPs to ``expression.zarr``.
    gep_dtype
        ``"float16"`` halves the GEP store; it then holds ``log1p(CPM)`` (CPM reaches 1e6, past float16's range;
        ~3 significant digits), as the store's ``units`` attribute says.
    cell_types, genes
        Subsets of the GEPs to store (default: all of the model's).
    overwrite
        Replace a non-empty ``out``.
    batch_size
        Inference batch size.
    log_base
        ``"auto"``: linear values only (log-scale input is refused with the fix); ``"2"``, ``"10"``, ``"e"``: the
        values are log(x + 1) in that base and every chunk is converted back.
    progress
        ``progress(fraction, message)``.
    fail_after_chunks
        Testing hook: raise after this many newly computed chunks (simulates an interruption).

    Returns
    -------
    StreamResult
        The folder and what was done, with the verdict counts. The folder holds ``proportions``, ``fit`` (with
        each sample's ``verdict`` and ``reasons``: the same flag rule as in memory, ``calibration.flag_fit``; no
        tissue checks, ``NO_TISSUE_CHECKS``), ``expression.zarr``, ``manifest.json`` and ``input_report.json``.

    Raises
    ------
    BlueInputError
        Bad input or options; the previous ``out`` is left untouched.
    """
    from ..io.files import check_output_folder

    source = source if isinstance(source, ChunkedBulk) else open_bulk(source)
    if chunk_size < 1:
        raise BlueInputError(f"chunk_size must be >= 1, got {chunk_size}.")
    if log_base not in ("auto", "2", "10", "e"):
        raise BlueInputError(f"log_base must be 'auto', '2', '10' or 'e', not {log_base!r}.")
    target = Path(out)
    check_output_folder(target, overwrite=overwrite, what="--out")
    present, plan = _column_plan(source, _model_genes(model))
    match = model.check_genes(present, source=source.path.name)  # the in-memory overlap rule, before any work
    keep_types = list(cell_types) if cell_types else list(model.cell_types)
    keep_genes = list(genes) if genes else list(model.output_genes)
    unknown = sorted(set(keep_types) - set(model.cell_types)) + sorted(set(keep_genes) - set(model.output_genes))
    if unknown:
        raise BlueInputError(f"not among the model's cell types / output genes: {unknown[:5]}.")
    type_idx = [model.cell_types.index(t) for t in keep_types]
    gene_idx = [model.output_genes.index(g) for g in keep_genes]
    partial = target.with_name(target.name + ".partial")
    manifest = {"source": str(source.path.resolve()), "n_samples": source.n_samples, "model": model.name,
                "weights_sha256": (model.card or {}).get("weights_sha256"), "chunk_size": chunk_size, "gep": gep,
                "gep_dtype": gep_dtype, "cell_types": keep_types, "genes": keep_genes, "log_base": log_base}
    _prepare_partial(partial, manifest)
    store = _gep_store(partial, source, model, keep_types, keep_genes, chunk_size, gep_dtype) if gep else None
    chunks = list(source.chunks(chunk_size))
    resumed = computed = 0
    for i, (start, stop) in enumerate(chunks):
        done = partial / "parts" / f"{i:06d}.done"
        if done.exists():
            resumed += 1
            continue
        frame = _to_linear(_chunk_frame(source, start, stop, present, plan), log_base)
        if computed == 0:  # the first chunk this run reads
            _check_linear(frame, source)
        result = _quiet_deconvolve(frame, model, batch_size)
        result = assess(None, result, model=model).annotate(result)  # the verdict, as in memory (no tissue checks)
        result.proportions_table().rename_axis("sample").to_parquet(partial / "parts" / f"{i:06d}.proportions.parquet")
        result.fit.rename_axis("sample").to_parquet(partial / "parts" / f"{i:06d}.fit.parquet")
        if store is not None:
            _write_gep_block(store, result.expression, start, stop, type_idx=type_idx, gene_idx=gene_idx,
                             full=(len(model.cell_types), len(model.output_genes)), gep_dtype=gep_dtype)
        done.write_text("ok")
        computed += 1
        if progress is not None:
            progress((i + 1) / len(chunks), f"chunk {i + 1}/{len(chunks)} ({stop:,} of {source.n_samples:,} samples)")
        if fail_after_chunks is not None and computed >= fail_after_chunks:
            raise KeyboardInterrupt(f"simulated interruption after {computed} chunks")
    files, verdicts = _assemble(partial, len(chunks))
    report = {"source": source.path.name, "layout": source.layout, "n_samples": source.n_samples,
              "n_genes": len(source.genes), "n_model_genes": match.n_expected, "n_model_genes_matched": match.n_matched,
              "input_panel": match.panel or "", "log_base": log_base,
              "adaptation": {"ran": False, "reason": "streamed runs are never adapted (a chunk is not a cohort)"},
              "verdicts": verdicts, "tissue_checks": NO_TISSUE_CHECKS}
    (partial / "input_report.json").write_text(dumps(report, indent=1))
    files.append("input_report.json")
    swap_in(partial, target)  # files.atomic_directory's final step: the old folder is replaced only when all is written
    logger.info("deconvolved %d samples in %d chunks (%d resumed) into %s", source.n_samples, len(chunks), resumed, target)
    return StreamResult(directory=target, n_samples=source.n_samples, n_chunks=len(chunks), n_resumed=resumed,
                        files=files, verdicts=verdicts)


def _assemble(partial: Path, n_chunks: int) -> tuple[list[str], dict[str, int]]:
    """Concatenate the per-chunk tables (one chunk in memory at a time) into CSV and parquet; count the verdicts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = []
    verdicts = {"ok": 0, "caution": 0, "wrong input": 0}
    for kind in ("proportions", "fit"):
        writer = None
        csv_path, pq_path = partial / f"{kind}.csv", partial / f"{kind}.parquet"
        with open(csv_path, "w", encoding="utf-8") as csv:
            for i in range(n_chunks):
                part = pd.read_parquet(partial / "parts" / f"{i:06d}.{kind}.parquet")
                if kind == "fit" and "verdict" in part:
                    for verdict, count in part["verdict"].value_counts().items():
                        verdicts[str(verdict)] = verdicts.get(str(verdict), 0) + int(count)
                write_csv(part, csv, header=i == 0)
                table = pa.Table.from_pandas(part)
                writer = writer or pq.ParquetWriter(pq_path, table.schema)
                writer.write_table(table)
        if writer is not None:
            writer.close()
        files += [csv_path.name, pq_path.name]
    shutil.rmtree(partial / "parts")
    if (partial / "expression.zarr").exists():
        files.append("expression.zarr")
    return files, verdicts


def deconvolve_dask(
    source: ChunkedBulk | str | os.PathLike,
    model: BlueModel,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    scheduler: str | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Proportions and fit of a large cohort as a ``dask`` pipeline over sample chunks.

    Each chunk is read and deconvolved by a task (``dask.delayed`` over the chunks, the model broadcast once per
    worker as a scattered object); on the local machine by default (threads), or on an existing
    ``dask.distributed`` cluster when ``scheduler`` is its address (``tcp://host:8786``; every worker must see
    ``source``'s path). Results are identical to :func:`deconvolve_chunked`.

    Returns
    -------
    pandas.DataFrame
        Index sample; the proportions table (``<type>_lo/_hi`` for ensembles) followed by the fit columns.
    """
    import dask

    source = source if isinstance(source, ChunkedBulk) else open_bulk(source)
    present, plan = _column_plan(source, _model_genes(model))
    model.check_genes(present, source=source.path.name)  # the in-memory overlap rule (refuses or warns), before any work
    path = str(source.path)

    def run(start: int, stop: int, shared_model: Any) -> pd.DataFrame:
        local = open_bulk(path)  # each task opens the file itself (workers may be other machines)
        frame = _chunk_frame(local, start, stop, present, plan)
        result = _quiet_deconvolve(frame, shared_model, batch_size)
        return result.proportions_table().join(result.fit)

    first = _chunk_frame(source, 0, min(chunk_size, source.n_samples), present, plan)
    _check_linear(first, source)
    if scheduler:
        from distributed import Client

        with Client(scheduler) as client:
            shared = client.scatter(model, broadcast=True)
            futures = [client.submit(run, a, b, shared, pure=False) for a, b in source.chunks(chunk_size)]
            parts = client.gather(futures)
    else:
        tasks = [dask.delayed(run)(a, b, model) for a, b in source.chunks(chunk_size)]
        parts = dask.compute(*tasks, scheduler="threads")
    return pd.concat(parts).rename_axis("sample")
