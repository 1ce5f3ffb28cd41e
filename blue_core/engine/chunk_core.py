"""What every chunked run shares: the cohort opened and matched once, adaptation on the whole file, linear chunks.

Used by :func:`~blue_core.engine.inference.deconvolve` on a file over the memory budget (results held in memory)
and by :mod:`~blue_core.engine.streaming` (results written to disk, locally or on Dask). Each chunk then goes
through the same deconvolution core as an in-memory run, so the numbers are those of the in-memory path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._types import Progress
from ..exceptions import BlueInputError
from ..io.chunked import ChunkedBulk, ColumnPlan, column_plan, open_bulk

if TYPE_CHECKING:  # pragma: no cover
    from .gene_match import GeneMatch
    from .model import BlueModel

__all__ = ["open_cohort", "model_genes", "to_linear", "check_linear", "chunk_frames", "linear_frame", "adapt_on_source",
           "chunked_report", "LogBase", "NO_TISSUE_CHECKS"]

LogBase = Literal["auto", "2", "10", "e"]
#: Why runs read in chunks have no tissue checks (the input report, the trust summary, the CLI).
NO_TISSUE_CHECKS = ("tissue checks are not run on files read in chunks (they rank every gene of every sample); the "
                    "verdict judges the fit and the ensemble spread only. For the tissue checks, deconvolve a few "
                    "hundred of the samples as a file that fits in memory")


def model_genes(model: BlueModel) -> list[str]:
    """Every gene the model reads or scores its fit on (input genes, then output genes).

    Returns
    -------
    list of str
        Unique gene symbols.
    """
    return list(dict.fromkeys([*map(str, model.input_genes), *map(str, model.output_genes)]))


def open_cohort(source: ChunkedBulk | str | os.PathLike, model: BlueModel
                ) -> tuple[ChunkedBulk, ColumnPlan, GeneMatch]:
    """Open a chunked input and match its genes to the model once (the in-memory overlap rule, before any work).

    Returns
    -------
    tuple
        ``(source, column plan over the model's genes, the model's GeneMatch)``.
    """
    source = source if isinstance(source, ChunkedBulk) else open_bulk(source)
    plan = column_plan(source, model_genes(model))
    match = model.check_genes(plan.genes, source=source.path.name)
    return source, plan, match


def to_linear(frame: pd.DataFrame, log_base: LogBase) -> pd.DataFrame:
    """A declared log base (``--log-base 2|10|e``) converts every chunk the same way: ``base**x - 1``, floored at 0
    (per-chunk auto-detection could read two chunks of one file differently, so chunked runs never guess).

    Returns
    -------
    pandas.DataFrame
        Linear values (the frame itself for ``"auto"``).
    """
    if log_base == "auto":
        return frame
    from ..io.units import LOG_BASES

    base = LOG_BASES[log_base][0]
    return (np.power(base, frame) - 1.0).clip(lower=0.0)


def check_linear(frame: pd.DataFrame, name: str) -> None:
    """``read_bulk``'s units rule (``io.convert_units``) on a chunk: chunked runs take linear values only.

    Raises
    ------
    BlueInputError
        Log-scale values, with the fix (declare the base, or read in memory).
    """
    from ..io.units import convert_units

    values = frame.to_numpy()
    if not values.size:
        return
    _, units, _ = convert_units(values, name)  # raises for negative values that are not log-scale
    if units == "log_converted":
        raise BlueInputError(f"{name}: the values look log-scale (min {values.min():.3g}, max {values.max():.3g}). "
                             "A file read in chunks needs linear counts or TPM: declare the base (log_base= / "
                             "--log-base 2|10|e, then every chunk is converted back the same way), or convert it "
                             "back to linear values first.")


def chunk_frames(source: ChunkedBulk, plan: ColumnPlan, *, chunk_size: int, log_base: LogBase
                 ) -> Iterator[tuple[int, int, pd.DataFrame]]:
    """``(start, stop, linear frame over the model's genes)`` of every chunk; the first one's units are checked.

    Yields
    ------
    tuple
        ``(start, stop, DataFrame samples x genes)``.
    """
    for i, (start, stop) in enumerate(source.chunks(chunk_size)):
        yield start, stop, linear_frame(source, plan, rows=(start, stop), log_base=log_base, check=i == 0)


def linear_frame(source: ChunkedBulk, plan: ColumnPlan, *, rows: tuple[int, int], log_base: LogBase,
                 check: bool) -> pd.DataFrame:
    """Samples ``rows = (start, stop)`` over the model's genes, a declared log base converted back; with ``check``, the
    units rule applied (the first chunk of a run: log-scale input is refused with the fix).

    Returns
    -------
    pandas.DataFrame
        ``(stop - start, genes)`` linear values.
    """
    frame = to_linear(plan.frame(source, *rows), log_base)
    if check:
        check_linear(frame, source.path.name)
    return frame


def adapt_on_source(model: BlueModel, source: ChunkedBulk, *, plan: ColumnPlan, match: GeneMatch,
                    adapt: Any, log_base: LogBase, chunk_size: int, progress: Progress | None = None
                    ) -> tuple[BlueModel, dict[str, Any]]:
    """Cohort adaptation on a chunked file: the same networks an in-memory run of the whole file adapts.

    ``adapt`` is ``deconvolve``'s option (None: the model's default). The rows adaptation learns from
    (:func:`~blue_core.engine.adaptation.cohort_rows`) are read in one pass over the file.

    Returns
    -------
    tuple
        ``(model to run, adaptation record)``.
    """
    from .adaptation import adapt_model, adapt_request, cohort_rows, refusal

    request = adapt_request(model, adapt)
    if request is None:
        return model, {"ran": False, "reason": "not requested"}
    config, required = request
    refused = refusal(model, n_samples=source.n_samples, config=config)
    if refused is not None:
        if required:
            raise BlueInputError(refused[1])
        return model, {"ran": False, "reason": refused[0]}
    rows = cohort_rows(source.n_samples, config)
    positions = pd.Index(plan.genes).get_indexer([str(g) for g in model.input_genes])
    parts = []
    for start, stop, frame in chunk_frames(source, plan, chunk_size=chunk_size, log_base=log_base):
        keep = rows[(rows >= start) & (rows < stop)] - start
        if len(keep):
            block = frame.to_numpy()[keep]
            values = np.zeros((len(keep), len(positions)))
            values[:, positions >= 0] = block[:, positions[positions >= 0]]
            parts.append(values)
        if progress is not None:
            progress(0.2 * stop / source.n_samples, f"reading the samples adaptation learns from ({stop:,})")
    sub = None if progress is None else (lambda f, m: progress(0.2 + 0.8 * f, m))
    adapted, record = adapt_model(model, np.vstack(parts), present=match.present, config=config, progress=sub)
    record["n_samples"] = int(source.n_samples)
    return adapted, record


def chunked_report(first: dict[str, Any], *, source: ChunkedBulk, adaptation: dict[str, Any], reason: str,
                   chunk_size: int, log_base: LogBase) -> dict[str, Any]:
    """The input report of a file read in chunks: the first chunk's report, with the file's sample count, the
    adaptation record, how it was read and why, and that tissue checks did not run.

    Returns
    -------
    dict
        JSON-ready.
    """
    return dict(first, source=source.path.name, layout=source.layout, n_samples=int(source.n_samples),
                n_genes=len(source.genes), adaptation=adaptation, log_base=log_base,
                read={"mode": "stream", "reason": reason, "chunk_size": int(chunk_size)},
                tissue_checks=NO_TISSUE_CHECKS)
