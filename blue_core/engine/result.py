"""The result of a deconvolution and its folder: tables, GEPs, the h5ad layout, provenance; read and written here.

One writer (:func:`write_result_files`) serves a result held in memory (:meth:`Deconvolution.write`) and a run read
in chunks (:mod:`~blue_core.engine.streaming`, one block of samples at a time), so both paths write the same files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd

from ..exceptions import BlueInputError
from ..io.files import write_csv

__all__ = ["Deconvolution", "write_result_files", "provenance", "GEP_UNITS", "LOG_GEP_UNITS"]

logger = logging.getLogger(__name__)

#: ``uns["units"]`` of a result's GEP layers: CPM, or log1p(CPM) in a float16 store.
GEP_UNITS = "CPM over the model's output genes"
LOG_GEP_UNITS = "log1p(CPM) over the model's output genes"


def _layer_key(cell_type: str) -> str:
    """h5ad layer key of a cell type: ``%`` and ``/`` percent-encoded (HDF5 keys may not hold ``/``);
    reversible with :func:`_cell_type_of_key` (``"HSC/Progenitor"`` <-> ``"HSC%2FProgenitor"``)."""
    return cell_type.replace("%", "%25").replace("/", "%2F")


def _cell_type_of_key(key: str) -> str:
    return key.replace("%2F", "/").replace("%25", "%")


@dataclass
class Deconvolution:
    """Result of :func:`deconvolve`.

    Attributes
    ----------
    proportions
        DataFrame ``(n_samples, K)``, cell fractions; rows sum to 1.
    expression
        ``(n_samples, K, G_out)`` float32, each cell type's GEP in CPM over the model's output genes.
    cell_types
        ``K`` names (order of ``expression`` axis 1).
    genes
        ``G_out`` output genes (order of ``expression`` axis 2).
    fit
        DataFrame indexed by sample: ``fit_r`` (float, NaN when it cannot be computed) and
        ``poorly_explained`` (bool).
    model_name
        Name of the model used.
    input_report
        Gene matching and input details (``n_model_genes``, ``n_model_genes_matched``, ...).
    proportions_lo, proportions_hi
        Ensemble models only: DataFrames like ``proportions`` with the lower / upper end of each
        sample's and type's 90 % interval (see :func:`proportion_intervals`); None for a single model.
    member_spread
        Ensemble models only: the members' standard deviation of each proportion.
    """

    proportions: pd.DataFrame
    expression: np.ndarray
    cell_types: list[str]
    genes: list[str]
    fit: pd.DataFrame
    model_name: str
    input_report: dict[str, Any] = field(default_factory=dict)
    proportions_lo: pd.DataFrame | None = None
    proportions_hi: pd.DataFrame | None = None
    member_spread: pd.DataFrame | None = None

    @property
    def samples(self) -> list[str]:
        """Sample names."""
        return list(self.proportions.index)

    def gep(self, cell_type: str) -> pd.DataFrame:
        """GEP of one cell type: DataFrame ``(n_samples, G_out)`` in CPM."""
        if cell_type not in self.cell_types:
            raise BlueInputError(f"unknown cell type {cell_type!r}; choose one of {self.cell_types}.")
        k = self.cell_types.index(cell_type)
        return pd.DataFrame(self.expression[:, k, :], index=self.proportions.index, columns=self.genes)

    def reconstruction(self) -> np.ndarray:
        """``sum_k p_k * GEP_k``: ``(n_samples, G_out)`` float32, the bulk the model explains (CPM scale)."""
        return np.einsum("nk,nkg->ng", self.proportions.to_numpy(np.float32), self.expression)

    def _skeleton(self, genes: list[str], *, units: str = GEP_UNITS, gep_cell_types: list[str] | None = None
                  ) -> ad.AnnData:
        """The result's AnnData without ``X`` and layers: ``obs`` the fit, ``obsm`` the proportion tables, ``uns``."""
        obs = self.fit.copy()
        for column in ("poorly_explained", "members_disagree"):
            if column in obs:
                obs[column] = obs[column].astype(bool)
        unmeasured = set((self.input_report or {}).get("unmeasured_output_genes") or [])
        var = pd.DataFrame({"measured_in_input": [g not in unmeasured for g in genes]}, index=pd.Index(genes, name="gene"))
        adata = ad.AnnData(obs=obs, var=var)  # var["measured_in_input"]: False where the GEP is inferred
        adata.obs_names = [str(s) for s in self.proportions.index]
        for key in ("proportions", "proportions_lo", "proportions_hi", "member_spread"):
            frame = getattr(self, key)
            if frame is not None:  # column names encoded like the layer keys (no '/' in HDF5 keys)
                adata.obsm[key] = frame.set_axis(adata.obs_names).rename(columns=lambda c: _layer_key(str(c)))
        adata.uns["model_name"] = self.model_name
        adata.uns["cell_types"] = list(self.cell_types)
        adata.uns["gep_cell_types"] = list(gep_cell_types or self.cell_types)
        adata.uns["units"] = units
        adata.uns["input_report_json"] = json.dumps(self.input_report, default=str)
        return adata

    def to_anndata(self) -> ad.AnnData:
        """AnnData (samples x output genes) with one layer per cell type (its GEP, CPM).

        ``X`` is the reconstruction ``sum_k p_k GEP_k``; ``obsm["proportions"]`` the proportions (columns encoded like the layer keys);
        ``obs`` the fit columns; ``uns`` the model name, cell types and the input report (JSON).
        Layer keys are the cell-type names with ``%`` and ``/`` percent-encoded (``HSC%2FProgenitor``).
        """
        adata = self._skeleton(list(self.genes))
        adata.X = self.reconstruction()
        for k, cell_type in enumerate(self.cell_types):
            adata.layers[_layer_key(cell_type)] = self.expression[:, k, :]
        return adata

    def write(self, directory: str | Path, *, overwrite: bool = False, gep: bool = True) -> Path:
        """Write ``proportions.csv`` (first column ``sample``), ``fit.csv``, ``expression.h5ad`` (unless ``gep`` is
        False) and ``provenance.json`` (model, BLUE version, whether and how the result was adapted to its cohort,
        the input report). A streamed run (:func:`~blue_core.engine.streaming.deconvolve_chunked`) writes the
        same files.

        The files are written into a temporary sibling folder that is renamed to ``directory`` only
        when all three are complete (:func:`~blue_core.io.files.atomic_directory`): a failure part-way
        (disk full, interrupt) leaves any previous result in ``directory`` intact.

        Parameters
        ----------
        directory
            Output folder; created. Must not be a file.
        overwrite
            Replace an existing non-empty folder (its old contents are removed once the new result is
            in place). Refused by default.

        Raises
        ------
        BlueInputError
            ``directory`` is a file, or is not empty and ``overwrite`` is False.
        """
        from ..io.files import atomic_directory

        with atomic_directory(directory, overwrite=overwrite, what="output folder") as tmp:
            blocks = [(0, len(self.proportions), self.reconstruction(), self.expression)] if gep else None
            write_result_files(tmp, self, blocks=blocks, compression="gzip")
        logger.info("wrote deconvolution of %d samples to %s", len(self.proportions), directory)
        return Path(directory)

    @classmethod
    def concat(cls, parts: list[Deconvolution]) -> Deconvolution:
        """One result from the results of consecutive sample chunks of one run (same model and genes).

        Returns
        -------
        Deconvolution
            Samples in the order of ``parts``; the first part's input report with the total sample count.
        """
        first = parts[0]

        def cat(key: str) -> pd.DataFrame | None:
            return None if getattr(first, key) is None else pd.concat([getattr(p, key) for p in parts])

        report = dict(first.input_report, n_samples=int(sum(len(p.proportions) for p in parts)))
        return cls(cat("proportions"), np.concatenate([p.expression for p in parts]), list(first.cell_types),
                   list(first.genes), cat("fit"), first.model_name, report, proportions_lo=cat("proportions_lo"),
                   proportions_hi=cat("proportions_hi"), member_spread=cat("member_spread"))

    def proportions_table(self) -> pd.DataFrame:
        """Proportions with, for an ensemble, ``<type>_lo`` / ``<type>_hi`` interval columns after each type."""
        if self.proportions_lo is None or self.proportions_hi is None:
            return self.proportions.copy()
        columns = {}
        for cell_type in self.cell_types:
            columns[cell_type] = self.proportions[cell_type]
            columns[f"{cell_type}_lo"] = self.proportions_lo[cell_type]
            columns[f"{cell_type}_hi"] = self.proportions_hi[cell_type]
        return pd.DataFrame(columns, index=self.proportions.index)

    @classmethod
    def read(cls, directory: str | Path) -> Deconvolution:
        """Read a result written by :meth:`write` (e.g. by ``blue deconvolve``)."""
        directory = Path(directory)
        path = directory / "expression.h5ad"
        if not path.is_file():
            raise BlueInputError(
                f"{directory} holds no expression.h5ad; pass the --out directory of `blue deconvolve`."
            )
        from ..io.hdf5 import read_h5ad

        adata = read_h5ad(path)
        cell_types = [str(c) for c in adata.uns["cell_types"]]
        stored = [str(c) for c in adata.uns.get("gep_cell_types", cell_types)]
        if stored != cell_types:
            raise BlueInputError(
                f"{path} holds the GEPs of {len(stored)} of the model's {len(cell_types)} cell types (a run with "
                "--cell-types); read that file with anndata.read_h5ad instead (one layer per cell type, units in "
                "uns['units']).")
        logged = str(adata.uns.get("units", GEP_UNITS)) == LOG_GEP_UNITS
        def layer(cell_type: str) -> np.ndarray:
            key = _layer_key(cell_type)
            if key not in adata.layers:  # written before the reversible encoding: '/' was '_'
                key = cell_type.replace("/", "_")
            values = np.asarray(adata.layers[key], dtype=np.float32)
            return np.expm1(values) if logged else values  # a float16 store holds log1p(CPM)

        expression = np.stack([layer(c) for c in cell_types], 1)
        def frame(key: str) -> pd.DataFrame:
            out = pd.DataFrame(adata.obsm[key], copy=True)
            return out.rename(columns=lambda c: _cell_type_of_key(str(c)))[cell_types]

        proportions = frame("proportions")
        proportions.index = pd.Index(adata.obs_names, name="sample")
        columns = [c for c in ("fit_r", "poorly_explained", "member_spread", "members_disagree", "verdict", "reasons")
                   if c in adata.obs]
        fit = adata.obs[columns].copy()
        fit.index = proportions.index
        for column in ("poorly_explained", "members_disagree"):
            if column in fit:
                fit[column] = fit[column].astype(bool)
        for column in ("verdict", "reasons"):
            if column in fit:
                fit[column] = fit[column].astype(str)
        report = json.loads(adata.uns.get("input_report_json", "{}"))
        extra = {}
        for key in ("proportions_lo", "proportions_hi", "member_spread"):
            if key in adata.obsm:
                extra[key] = frame(key).set_axis(proportions.index)
        return cls(proportions, expression, cell_types, [str(g) for g in adata.var_names], fit,
                   str(adata.uns.get("model_name", "")), report, **extra)


def write_result_files(folder: Path, result: Deconvolution, *,
                       blocks: Iterable[tuple[int, int, np.ndarray, np.ndarray]] | None,
                       genes: list[str] | None = None, gep_cell_types: list[str] | None = None,
                       gep_dtype: Literal["float32", "float16"] = "float32",
                       compression: Literal["gzip"] | None = None) -> list[str]:
    """The files of a result folder, the one writer of both paths: ``proportions.csv``, ``fit.csv``,
    ``expression.h5ad`` (when ``blocks`` is given) and ``provenance.json``.

    Parameters
    ----------
    folder
        An existing (temporary) folder.
    result
        The tables (``proportions``, ``fit``, intervals, input report); its ``expression`` is not read.
    blocks
        ``(start, stop, reconstruction (rows, G) CPM, GEPs (rows, K', G))`` covering the samples in order; the GEPs
        already cut to ``gep_cell_types`` x ``genes`` and, for ``gep_dtype="float16"``, as ``log1p(CPM)`` (CPM reaches
        1e6, past float16's range). None: no ``expression.h5ad``.
    genes, gep_cell_types
        The output genes and cell types of the blocks (default: the result's).
    gep_dtype
        dtype of the GEP layers.
    compression
        HDF5 compression of ``X`` and the layers (gzip for results held in memory; none for streamed runs, where it
        would cost more than the network).

    Returns
    -------
    list of str
        The file names written.
    """
    from ..io.hdf5 import add_dense_arrays
    from ..io.strictjson import dumps

    write_csv(result.proportions_table().rename_axis("sample"), folder / "proportions.csv")
    write_csv(result.fit.rename_axis("sample"), folder / "fit.csv")
    files = ["proportions.csv", "fit.csv"]
    if blocks is not None:
        genes = list(result.genes) if genes is None else list(genes)
        types = list(result.cell_types) if gep_cell_types is None else list(gep_cell_types)
        path = folder / "expression.h5ad"
        result._skeleton(genes, units=LOG_GEP_UNITS if gep_dtype == "float16" else GEP_UNITS,
                         gep_cell_types=types).write_h5ad(path)
        shape = (len(result.proportions), len(genes))
        arrays = {"X": (shape, "float32"), **{f"layers/{_layer_key(t)}": (shape, gep_dtype) for t in types}}
        with add_dense_arrays(path, arrays, compression=compression) as datasets:
            layers = [datasets[f"layers/{_layer_key(t)}"] for t in types]
            for start, stop, recon, gep in blocks:
                datasets["X"][start:stop] = recon
                for k, layer in enumerate(layers):
                    layer[start:stop] = gep[:, k, :]
        files.append("expression.h5ad")
    (folder / "provenance.json").write_text(dumps(provenance(result.model_name, result.input_report)) + "\n",
                                            encoding="utf-8")
    return [*files, "provenance.json"]


def provenance(model_name: str, input_report: dict[str, Any]) -> dict[str, Any]:
    """``provenance.json`` of a result folder (in memory or streamed): model, BLUE version, sample count,
    adaptation record and input report.

    Returns
    -------
    dict
        JSON-ready.
    """
    from .._version import __version__

    return {"model": model_name, "blue_version": __version__, "n_samples": int(input_report.get("n_samples", 0)),
            "adaptation": input_report.get("adaptation") or {"ran": False}, "input_report": input_report}
