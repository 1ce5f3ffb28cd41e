"""Archive scale: deconvolve cohorts that do not fit in memory, chunk by chunk, resumably, locally or on Dask.

The input is read in sample chunks with bounded memory (:func:`~blue_core.io.chunked.open_bulk`: h5ad, ARCHS4-layout
HDF5, zarr, samples x genes CSV/TSV), matched to the model once and adapted on the whole file as an in-memory run
would be (:mod:`~blue_core.engine.chunk_core`); every chunk then goes through the same in-memory core, so the numbers
are those of :func:`~blue_core.engine.inference.deconvolve`.

Output (:func:`deconvolve_chunked`): the files of :meth:`~blue_core.engine.result.Deconvolution.write`, written by
the same writer (:func:`~blue_core.engine.result.write_result_files`): ``proportions.csv``, ``fit.csv`` (with each
sample's trust verdict), ``expression.h5ad`` (optional float16 ``log1p(CPM)`` layers, subsets of cell types and
genes, or none) and ``provenance.json``. Each chunk is one task that writes its own files into
``<out>.partial/parts`` and a ``.done`` marker (one writer per chunk region, so Dask workers write in parallel); an
interrupted run resumes with the chunks not yet done, and the folder is renamed to ``out`` only when complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._types import Progress
from ..exceptions import BlueInputError
from ..io.chunked import ChunkedBulk, ColumnPlan, open_bulk
from ..io.files import swap_in
from .chunk_core import LogBase, adapt_on_source, chunked_report, linear_frame, open_cohort
from .run_plan import DEFAULT_CHUNK_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel

__all__ = ["deconvolve_chunked", "deconvolve_dask", "StreamResult"]

logger = logging.getLogger(__name__)

#: The result tables one chunk writes (``parts/<i>.<name>.parquet``); the optional ones only for ensembles.
_TABLES = ("proportions", "proportions_lo", "proportions_hi", "member_spread", "fit")


@dataclass(frozen=True)
class _ChunkTask:
    """What every chunk of one run needs; the same object runs a chunk locally or on a Dask worker.

    Attributes
    ----------
    path
        The input (each Dask task opens it itself: workers may be other machines on a shared file system).
    plan
        Source columns of the model's genes.
    model
        The model to run (already adapted on the whole file).
    parts
        ``<out>.partial/parts``.
    log_base, batch_size
        As :func:`deconvolve_chunked`.
    gep, gep_dtype, type_idx, gene_idx
        Whether and which GEPs are kept, and their dtype.
    """

    path: str
    plan: ColumnPlan
    model: BlueModel
    parts: str
    log_base: LogBase
    batch_size: int
    gep: bool
    gep_dtype: str
    type_idx: tuple[int, ...]
    gene_idx: tuple[int, ...]

    def done(self, i: int) -> Path:
        """The marker of chunk ``i``: written last, so a chunk with a marker has all its files."""
        return Path(self.parts) / f"{i:06d}.done"

    def run(self, i: int, start: int, stop: int, source: ChunkedBulk | None = None) -> int:
        """Deconvolve samples ``[start, stop)`` and write chunk ``i``'s files.

        Returns
        -------
        int
            The number of samples written.
        """
        source = source if source is not None else open_bulk(self.path)
        frame = linear_frame(source, self.plan, rows=(start, stop), log_base=self.log_base, check=i == 0)
        from ..analysis.trust import assess
        from .inference import deconvolve_chunk

        result = deconvolve_chunk(frame, self.model, batch_size=self.batch_size)
        result = assess(None, result, model=self.model).annotate(result)  # the verdict (fit and spread rule)
        parts = Path(self.parts)
        for name in _TABLES:
            table = getattr(result, name)
            if table is not None:
                table.rename_axis("sample").to_parquet(parts / f"{i:06d}.{name}.parquet")
        (parts / f"{i:06d}.report.json").write_text(json.dumps(result.input_report, default=str))
        if self.gep:
            np.save(parts / f"{i:06d}.x.npy", result.reconstruction()[:, list(self.gene_idx)])
            np.save(parts / f"{i:06d}.gep.npy", _gep_block(result.expression, self))
        self.done(i).write_text("ok")
        return stop - start


def _gep_block(expression: np.ndarray, task: _ChunkTask) -> np.ndarray:
    """One chunk's GEPs ``(rows, K, G)`` cut to the kept types and genes, in the stored dtype (float16 holds
    ``log1p(CPM)``: CPM reaches 1e6, past float16's 65,504)."""
    block = expression
    if len(task.type_idx) != block.shape[1]:
        block = block[:, list(task.type_idx)]
    if len(task.gene_idx) != block.shape[2]:
        block = block[:, :, list(task.gene_idx)]
    if task.gep_dtype == "float16":
        block = np.log1p(block)
    return block.astype(task.gep_dtype, copy=False)


def _run_task(task: _ChunkTask, i: int, start: int, stop: int) -> int:
    """A Dask task: one chunk (module level, so workers can import it)."""
    return task.run(i, start, stop)


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
        Samples per verdict (``ok`` / ``caution``; runs read in chunks have no tissue checks, so no ``wrong input``).
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
    adapt: Any = None,
    log_base: LogBase = "auto",
    scheduler: str | None = None,
    reason: str = "asked to stream",
    progress: Progress | None = None,
    fail_after_chunks: int | None = None,
) -> StreamResult:
    """Deconvolve a large cohort chunk by chunk with bounded memory; resumable; never half-written.

    Parameters
    ----------
    source
        A :class:`~blue_core.io.chunked.ChunkedBulk` or a path for :func:`~blue_core.io.chunked.open_bulk`.
    model
        The model.
    out
        Output folder (must be absent or empty, unless ``overwrite``).
    chunk_size
        Samples per chunk. Peak memory grows with it: about 2.5 x chunk_size x cell types x output genes x 4
        bytes (the GEPs of one chunk and their copies), e.g. ~1 GB for 5,000 samples x 7 types x 1,307 genes.
    gep
        Write the GEPs (``expression.h5ad``).
    gep_dtype
        ``"float16"`` halves the GEP layers; they then hold ``log1p(CPM)`` (~3 significant digits), as the file's
        ``uns["units"]`` says; :meth:`~blue_core.engine.result.Deconvolution.read` converts them back.
    cell_types, genes
        Subsets of the GEPs to store (default: all of the model's).
    overwrite
        Replace a non-empty ``out``.
    batch_size
        Inference batch size.
    adapt
        Cohort adaptation, as :func:`~blue_core.engine.inference.deconvolve` (None: the model's default); it learns
        from the whole file (at most ``AdaptationConfig.max_cohort_samples`` evenly spaced samples).
    log_base
        ``"auto"``: linear values only (log-scale input is refused with the fix); ``"2"``, ``"10"``, ``"e"``: the
        values are log(x + 1) in that base and every chunk is converted back.
    scheduler
        None: the chunks run here, one after another. A ``dask.distributed`` scheduler address
        (``tcp://host:8786``): every chunk is a task on that cluster (each worker must see ``source`` and ``out``
        on a shared file system).
    reason
        Why this run streams (recorded in the input report's ``read`` entry).
    progress
        ``progress(fraction, message)``.
    fail_after_chunks
        Testing hook: raise after this many newly computed chunks (simulates an interruption; local runs only).

    Returns
    -------
    StreamResult
        The folder and what was done, with the verdict counts.

    Raises
    ------
    BlueInputError
        Bad input or options; the previous ``out`` is left untouched.
    """
    from ..io.files import check_output_folder

    _check_options(chunk_size=chunk_size, log_base=log_base, gep_dtype=gep_dtype)
    target = Path(out)
    check_output_folder(target, overwrite=overwrite, what="--out")
    source, plan, match = open_cohort(source, model)  # the in-memory overlap rule, before any work
    keep_types, keep_genes = _kept(model, cell_types, genes)
    partial = target.with_name(target.name + ".partial")
    manifest = {"source": str(source.path.resolve()), "n_samples": source.n_samples, "model": model.name,
                "weights_sha256": (model.card or {}).get("weights_sha256"), "chunk_size": chunk_size, "gep": gep,
                "gep_dtype": gep_dtype, "cell_types": keep_types, "genes": keep_genes, "log_base": log_base,
                "adapt": repr(adapt)}
    _prepare_partial(partial, manifest)
    first = 0.0 if progress is None else 0.25  # the share of the bar adaptation takes
    sub = None if progress is None else (lambda f, m: progress(first * f, m))
    run_model, record = adapt_on_source(model, source, plan=plan, match=match, adapt=adapt, log_base=log_base,
                                        chunk_size=chunk_size, progress=sub)
    from .inference import cohort_on_source

    run_model = cohort_on_source(run_model, source, plan=plan, log_base=log_base, chunk_size=chunk_size)
    task = _ChunkTask(path=str(source.path), plan=plan, model=run_model, parts=str(partial / "parts"),
                      log_base=log_base, batch_size=batch_size, gep=gep, gep_dtype=gep_dtype,
                      type_idx=tuple(model.cell_types.index(t) for t in keep_types),
                      gene_idx=tuple(model.output_genes.index(g) for g in keep_genes))
    chunks = list(source.chunks(chunk_size))
    todo = [(i, a, b) for i, (a, b) in enumerate(chunks) if not task.done(i).exists()]
    if todo and todo[0][0] != 0:  # resumed after the first chunk: its units check runs again on a fresh read
        linear_frame(source, plan, rows=chunks[0], log_base=log_base, check=True)

    def advance(n_done: int, samples: int) -> None:
        if progress is not None:
            progress(first + (1 - first) * 0.95 * n_done / len(chunks),
                     f"chunk {n_done}/{len(chunks)} ({samples:,} of {source.n_samples:,} samples)")

    resumed = len(chunks) - len(todo)
    if scheduler:
        _run_on_dask(task, todo, scheduler, on_done=advance, already=resumed, n_samples=source.n_samples)
    else:
        _run_here(task, todo, source, on_done=advance, already=resumed, fail_after=fail_after_chunks)
    if progress is not None:
        progress(first + (1 - first) * 0.95, "writing the result files")
    files, verdicts = _assemble(partial, task, chunks, source=source, adaptation=record, reason=reason,
                                chunk_size=chunk_size, keep=(keep_types, keep_genes))
    swap_in(partial, target)  # files.atomic_directory's final step: the old folder is replaced only when all is written
    logger.info("deconvolved %d samples in %d chunks (%d resumed) into %s", source.n_samples, len(chunks), resumed,
                target)
    return StreamResult(directory=target, n_samples=source.n_samples, n_chunks=len(chunks), n_resumed=resumed,
                        files=files, verdicts=verdicts)


def _check_options(*, chunk_size: int, log_base: str, gep_dtype: str) -> None:
    """Options refused before any work, with the values allowed."""
    if chunk_size < 1:
        raise BlueInputError(f"chunk_size must be >= 1, got {chunk_size}.")
    if log_base not in ("auto", "2", "10", "e"):
        raise BlueInputError(f"log_base must be 'auto', '2', '10' or 'e', not {log_base!r}.")
    if gep_dtype not in ("float32", "float16"):
        raise BlueInputError(f"gep_dtype must be 'float32' or 'float16', not {gep_dtype!r}.")


def _kept(model: BlueModel, cell_types: Sequence[str] | None, genes: Sequence[str] | None
          ) -> tuple[list[str], list[str]]:
    """The cell types and output genes whose GEPs are written (default: all), checked against the model."""
    keep_types = list(cell_types) if cell_types else list(model.cell_types)
    keep_genes = list(genes) if genes else list(model.output_genes)
    unknown = sorted(set(keep_types) - set(model.cell_types)) + sorted(set(keep_genes) - set(model.output_genes))
    if unknown:
        raise BlueInputError(f"not among the model's cell types / output genes: {unknown[:5]}; see the model card "
                             "for its names.")
    return keep_types, keep_genes


def _run_here(task: _ChunkTask, todo: list[tuple[int, int, int]], source: ChunkedBulk, *, on_done: Any,
              already: int, fail_after: int | None) -> None:
    """The chunks one after another in this process (sequential reads continue one pass over the file)."""
    for computed, (i, start, stop) in enumerate(todo, start=1):
        task.run(i, start, stop, source=source)
        on_done(already + computed, stop)
        if fail_after is not None and computed >= fail_after:
            raise KeyboardInterrupt(f"simulated interruption after {computed} chunks")


def _run_on_dask(task: _ChunkTask, todo: list[tuple[int, int, int]], scheduler: str, *, on_done: Any,
                 already: int, n_samples: int) -> None:
    """The chunks as tasks on a ``dask.distributed`` cluster (the task with its model sent once to every worker)."""
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        shared = client.scatter(task, broadcast=True)
        futures = [client.submit(_run_task, shared, i, a, b, pure=False) for i, a, b in todo]
        done_samples = 0
        for n, future in enumerate(as_completed(futures), start=1):
            done_samples += future.result()  # a task's error is raised here, with its traceback
            on_done(already + n, min(n_samples, done_samples))


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


def _assemble(partial: Path, task: _ChunkTask, chunks: list[tuple[int, int]], *, source: ChunkedBulk,
              adaptation: dict[str, Any], reason: str, chunk_size: int,
              keep: tuple[list[str], list[str]]) -> tuple[list[str], dict[str, int]]:
    """The chunks' files into the result folder's files (the in-memory writer; one chunk's GEPs in memory at a time);
    the working files removed."""
    from .result import Deconvolution, write_result_files

    parts = Path(task.parts)

    def table(name: str) -> pd.DataFrame | None:
        paths = [parts / f"{i:06d}.{name}.parquet" for i in range(len(chunks))]
        return pd.concat([pd.read_parquet(p) for p in paths]) if paths[0].exists() else None

    tables = {name: table(name) for name in _TABLES}
    first = json.loads((parts / "000000.report.json").read_text())
    report = chunked_report(first, source=source, adaptation=adaptation, reason=reason, chunk_size=chunk_size,
                            log_base=task.log_base)
    model = task.model
    result = Deconvolution(tables["proportions"], np.zeros((len(tables["proportions"]), len(model.cell_types), 0),
                                                            dtype=np.float32),
                           list(model.cell_types), list(model.output_genes), tables["fit"], model.name, report,
                           proportions_lo=tables["proportions_lo"], proportions_hi=tables["proportions_hi"],
                           member_spread=tables["member_spread"])
    blocks = _gep_blocks(parts, chunks) if task.gep else None
    files = write_result_files(partial, result, blocks=blocks, genes=keep[1], gep_cell_types=keep[0],
                               gep_dtype=task.gep_dtype)  # type: ignore[arg-type]
    shutil.rmtree(parts)
    (partial / "manifest.json").unlink()
    counts = result.fit["verdict"].value_counts() if "verdict" in result.fit else pd.Series(dtype=int)
    verdicts = {"ok": 0, "caution": 0, "wrong input": 0} | {str(k): int(v) for k, v in counts.items()}
    return files, verdicts


def _gep_blocks(parts: Path, chunks: list[tuple[int, int]]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Every chunk's reconstruction and GEPs, in order, read one chunk at a time."""
    for i, (start, stop) in enumerate(chunks):
        yield start, stop, np.load(parts / f"{i:06d}.x.npy"), np.load(parts / f"{i:06d}.gep.npy")


def deconvolve_dask(
    source: ChunkedBulk | str | os.PathLike,
    model: BlueModel,
    *,
    out: str | os.PathLike,
    scheduler: str | None = None,
    n_workers: int = 2,
    **options: Any,
) -> StreamResult:
    """:func:`deconvolve_chunked` with every chunk a task on a ``dask.distributed`` cluster.

    Parameters
    ----------
    source, model, out
        As :func:`deconvolve_chunked`.
    scheduler
        The address of an existing cluster's scheduler (``tcp://host:8786``; e.g. one that ``dask-jobqueue`` or
        the Dask Kubernetes operator started). None: a ``LocalCluster`` of ``n_workers`` single-thread worker
        processes, started for this run and closed after it.
    n_workers
        Workers of the local cluster (ignored when ``scheduler`` is given).
    **options
        Any other option of :func:`deconvolve_chunked` (``chunk_size``, ``gep``, ``adapt``, ...).

    Returns
    -------
    StreamResult
        As :func:`deconvolve_chunked`; the files are identical.
    """
    if scheduler:
        return deconvolve_chunked(source, model, out=out, scheduler=scheduler, **options)
    from distributed import LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        return deconvolve_chunked(source, model, out=out, scheduler=cluster.scheduler_address, **options)
