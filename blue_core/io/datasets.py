"""Bundled demo cohorts (real public bulk RNA-seq) offered by the app and the CLI.

Each cohort is a folder ``<sample root>/<name>/`` holding ``bulk.csv.gz`` (genes x samples, first
column ``gene``), ``cohort.json`` (name, tissue, title, description, units, source, citation,
licence, recommended_model), and optionally ``clinical.csv`` and ``truth.csv`` (first column
``sample``) plus further ``*.csv`` tables with the same layout (e.g. ``truth_fine.csv``).

The sample root is the environment variable ``BLUE_SAMPLE_DIR`` if set, else the repository's
``sample_data/`` folder. Provenance of every cohort: ``sample_data/README.md``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import BlueInputError
from .bulk import read_bulk
from .resources import package_folder

__all__ = ["validation_cohorts", "SampleCohort", "sample_root", "list_samples", "load_sample"]

logger = logging.getLogger(__name__)

_CARD = "cohort.json"
_BULK = "bulk.csv.gz"


def sample_root() -> Path:
    """Folder that holds the sample cohorts: ``$BLUE_SAMPLE_DIR`` or the installed demos (package
    ``blue_sample_data``: the checkout's ``sample_data/``).

    Returns
    -------
    pathlib.Path
        The folder (it may not exist when nothing is installed; :func:`list_samples` is then empty).
    """
    env = os.environ.get("BLUE_SAMPLE_DIR")
    if env:
        return Path(env)
    installed = package_folder("blue_sample_data")
    return installed if installed is not None else Path("/nonexistent/blue_sample_data")


@dataclass
class SampleCohort:
    """A bundled demo cohort, loaded.

    Attributes
    ----------
    name
        Folder name, e.g. ``"monaco_pbmc"``.
    tissue
        Tissue in words (``"blood (PBMC)"``).
    title, description
        One-line title and a few sentences for the app.
    bulk
        Bulk AnnData from :func:`~blue_core.io.read_bulk`, shape (n_samples, n_genes), linear scale.
    clinical
        Per-sample clinical table (index ``sample``, same order as ``bulk.obs_names``) or ``None``.
    truth
        Measured cell-type fractions (index ``sample``, same order as ``bulk.obs_names``) or ``None``.
        Evaluation only: never fit or tune to it.
    recommended_model
        Name of the pretrained model that fits the tissue (``"pbmc"``, ``"pancreas"``, ``"aml"``).
    tables
        Other per-sample tables in the folder by file stem (e.g. ``"truth_fine"``).
    info
        The full ``cohort.json`` card (units, source, citation, licence, ...).
    """

    name: str
    tissue: str
    title: str
    description: str
    bulk: Any
    clinical: pd.DataFrame | None
    truth: pd.DataFrame | None
    recommended_model: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _cohort_dirs() -> list[Path]:
    root = sample_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / _CARD).is_file() and (p / _BULK).is_file())


def _read_card(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / _CARD).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BlueInputError(f"{directory / _CARD} is not valid JSON ({err}). Fix or rebuild the cohort folder.") from None


def list_samples() -> pd.DataFrame:
    """List the bundled sample cohorts.

    Returns
    -------
    pandas.DataFrame
        One row per cohort, index ``name``; columns ``tissue``, ``title``, ``n_samples``, ``n_genes``,
        ``units``, ``recommended_model``, ``has_clinical``, ``has_truth``, ``description``.
        Empty (with these columns) when no cohort is found.
    """
    columns = ["tissue", "title", "n_samples", "n_genes", "units", "recommended_model", "has_clinical", "has_truth", "description"]
    rows = []
    for directory in _cohort_dirs():
        card = _read_card(directory)
        rows.append({
            "name": card.get("name", directory.name),
            **{key: card.get(key) for key in ("tissue", "title", "n_samples", "n_genes", "units", "recommended_model", "description")},
            "has_clinical": (directory / "clinical.csv").is_file(),
            "has_truth": (directory / "truth.csv").is_file(),
        })
    return pd.DataFrame(rows, columns=["name", *columns]).set_index("name")


def validation_cohorts(model_name: str, *, exclude: str | None = None) -> list[str]:
    """Demo cohorts on which subtypes found with model ``model_name`` can be validated.

    A cohort qualifies when it is meant for the same model (``recommended_model``), so that its bulk is
    deconvolved into the same cell types and genes, and it has a clinical table (survival). ``exclude``:
    the cohort the subtypes were found on.

    Returns
    -------
    list of str
        Names of the demo cohorts (empty when none).
    """
    table = list_samples()
    if table.empty:
        return []
    keep = (table["recommended_model"].astype(str) == str(model_name)) & table["has_clinical"].astype(bool)
    return [str(n) for n in table.index[keep] if str(n) != exclude]


def _read_table(path: Path, samples: pd.Index) -> pd.DataFrame:
    from ..analysis.clinical import read_clinical

    table = read_clinical(path, what="cohort table")
    missing = samples.difference(table.index)
    if len(missing) == len(samples):
        raise BlueInputError(
            f"{path.name}: none of its samples match the bulk's sample names (e.g. {samples[0]!r} vs {table.index[0]!r}). "
            "The first column must hold the bulk's sample names."
        )
    if len(missing):
        logger.warning("%s: %d bulk samples have no row (filled with NaN)", path, len(missing))
    return table.reindex(samples)


def load_sample(name: str) -> SampleCohort:
    """Load a bundled sample cohort by name (see :func:`list_samples`).

    Parameters
    ----------
    name
        Cohort folder name, e.g. ``"monaco_pbmc"``, ``"fadista_islets"``, ``"tcga_laml"``, ``"target_aml"``.

    Returns
    -------
    SampleCohort
        The bulk (read with :func:`~blue_core.io.read_bulk`, so log-scale cohorts are converted back to
        linear with a ``LogScaleInputWarning``) and its tables, re-ordered to the bulk's samples.

    Raises
    ------
    BlueInputError
        Unknown name (the message lists the available cohorts).
    """
    directories = {d.name: d for d in _cohort_dirs()}
    if name not in directories:
        available = ", ".join(directories) or f"none found in {sample_root()}"
        raise BlueInputError(f"No sample cohort named {name!r}. Available: {available}. (Set BLUE_SAMPLE_DIR to use another folder.)")
    directory = directories[name]
    card = _read_card(directory)
    bulk = read_bulk(directory / _BULK, filename=f"{name}/{_BULK}")
    samples = pd.Index(bulk.obs_names)
    tables = {path.stem: _read_table(path, samples) for path in sorted(directory.glob("*.csv"))}
    cohort = SampleCohort(
        name=name,
        tissue=card.get("tissue", ""),
        title=card.get("title", name),
        description=card.get("description", ""),
        bulk=bulk,
        clinical=tables.pop("clinical", None),
        truth=tables.pop("truth", None),
        recommended_model=card.get("recommended_model", ""),
        tables=tables,
        info=card,
    )
    logger.info("loaded sample cohort %s: %d samples x %d genes", name, bulk.n_obs, bulk.n_vars)
    return cohort
