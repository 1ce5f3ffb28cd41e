"""Which path a deconvolution of a file takes: read whole into memory, or streamed in sample chunks.

One rule for every caller (``blue deconvolve``, :func:`~blue_core.engine.inference.deconvolve` on a path, the
benchmarks): a file streams when its layout can only be read in chunks (ARCHS4-layout HDF5, zarr), or when its
format can stream (:data:`~blue_core.io.chunked.STREAM_SUFFIXES`) and reading it whole would be refused for its
size (:func:`~blue_core.io.source.size_refusal`: the memory budget, or the decompression ceiling of a gzip file),
or when the result it would hold in memory (its GEPs) does not fit the budget either. Everything else is read
in memory, where the tissue checks run. Both paths give the same numbers and write the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..io.source import InputLimits, h5ad_matrix_info, h5ad_read_bytes, size_refusal

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel

__all__ = ["RunPlan", "plan_run", "gep_bytes", "DEFAULT_CHUNK_SIZE"]

#: Samples per chunk when none is given (the CLI's ``--chunk-size`` default too).
DEFAULT_CHUNK_SIZE = 5_000
#: Layouts read chunk by chunk only (``read_bulk`` does not read them).
_STREAM_ONLY = (".h5", ".hdf5", ".zarr")


@dataclass(frozen=True)
class RunPlan:
    """The path a run takes and why.

    Attributes
    ----------
    mode
        ``"memory"`` or ``"stream"``.
    reason
        Plain words, e.g. "big.h5ad: reading it needs about 8.0 GB, more than the memory budget of 6.0 GB".
    """

    mode: Literal["memory", "stream"]
    reason: str

    @property
    def streams(self) -> bool:
        """Whether the run streams."""
        return self.mode == "stream"


def gep_bytes(n_samples: int, model: BlueModel) -> int:
    """Memory of ``n_samples`` samples' GEPs in float32: n x cell types x output genes x 4 bytes.

    Returns
    -------
    int
        Bytes.
    """
    return int(n_samples) * len(model.cell_types) * len(model.output_genes) * 4


def plan_run(path: str | os.PathLike, model: BlueModel, *, gep: bool = True,
             limits: InputLimits | None = None) -> RunPlan:
    """Decide between reading ``path`` in memory and streaming it (the rule in the module docstring).

    Parameters
    ----------
    path
        The bulk file (or folder).
    model
        The model (its size decides what the GEPs of the cohort need).
    gep
        Whether the run keeps the GEPs.
    limits
        Budget and ceiling (default :meth:`~blue_core.io.source.InputLimits.from_env`).

    Returns
    -------
    RunPlan
        The mode and the reason in plain words.
    """
    from ..io.chunked import STREAM_SUFFIXES

    limits = limits or InputLimits.from_env()
    path = Path(path)
    lower = path.name.lower()
    if lower.endswith(_STREAM_ONLY):
        return RunPlan("stream", f"{path.name}: this layout (ARCHS4 HDF5 or zarr) is read chunk by chunk")
    if not lower.endswith(STREAM_SUFFIXES) or not path.is_file():
        return RunPlan("memory", f"{path.name}: this format is read in memory")
    refused = size_refusal(path, limits=limits)
    if refused is not None:
        return RunPlan("stream", f"{path.name}: {refused}")
    if gep and lower.endswith(".h5ad"):
        _, shape, _, _ = h5ad_matrix_info(path, name=path.name, limits=limits)
        need = h5ad_read_bytes(shape, path.stat().st_size) + gep_bytes(shape[0], model)
        if need > limits.memory_budget_bytes:
            return RunPlan("stream", f"{path.name}: reading it and holding its GEPs need about {need / 1e9:.1f} GB, "
                                     f"more than the memory budget of {limits.memory_budget_bytes / 1e9:.1f} GB "
                                     "(BLUE_MEMORY_BUDGET_MB)")
    return RunPlan("memory", f"{path.name}: fits in the memory budget of {limits.memory_budget_bytes / 1e9:.1f} GB")
