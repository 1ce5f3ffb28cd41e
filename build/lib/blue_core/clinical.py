"""Clinical tables: reading an uploaded table, and which columns can serve as groups, covariates or survival.

The one home of these rules (the app, the CLI and the validation workflow use them)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pandas as pd

from .exceptions import BlueInputError

#: Clinical columns guessed as survival time / event, in order of preference.
TIME_COLUMNS = ("os_days", "os_months", "os_time", "time", "efs_days", "os_months_cbioportal")


EVENT_COLUMNS = ("os_event", "os_status", "event", "status", "efs_event", "os_status_cbioportal")


def read_clinical_table(data: bytes, filename: str) -> pd.DataFrame:
    """Read an uploaded clinical table (CSV/TSV/TXT, .gz, or XLSX): first column = sample ID.

    Raises
    ------
    BlueInputError
        Unreadable file, fewer than one data column, or duplicated sample IDs.
    """
    name = filename.lower()
    try:
        if name.endswith((".xlsx", ".xls")):
            table = pd.read_excel(io.BytesIO(data), index_col=0)
        else:
            compression = "gzip" if name.endswith(".gz") else None
            sep = "\t" if name.removesuffix(".gz").endswith((".tsv", ".txt")) else ","
            table = pd.read_csv(io.BytesIO(data), sep=sep, index_col=0, compression=compression)
    except Exception as err:  # noqa: BLE001 - any parser failure becomes a user message
        raise BlueInputError(
            f"Could not read the clinical table {filename!r} ({type(err).__name__}: {err}). "
            "Upload a CSV, TSV or XLSX file with one row per sample and the sample ID in the first column."
        ) from err
    if table.shape[1] == 0 or table.shape[0] == 0:
        raise BlueInputError(
            f"The clinical table {filename!r} has no data columns. Put the sample ID in the first column and "
            "clinical variables (e.g. os_days, os_event, HbA1c) in the following columns."
        )
    table.index = table.index.astype(str)
    table.index.name = "sample"
    dup = table.index[table.index.duplicated()].unique()
    if len(dup):
        raise BlueInputError(
            f"The clinical table has duplicated sample IDs ({', '.join(map(str, dup[:5]))}). "
            "Keep one row per sample."
        )
    return table


def guess_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    """First column whose lower-cased name is in ``candidates`` (for default selections)."""
    lower = {str(c).lower(): str(c) for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    return None


def categorical_columns(clinical: pd.DataFrame | None, *, max_levels: int = 8) -> list[str]:
    """Clinical columns usable as groups: 2..max_levels distinct values."""
    if clinical is None:
        return []
    return [str(c) for c in clinical.columns if 2 <= clinical[c].nunique(dropna=True) <= max_levels]


def numeric_columns(clinical: pd.DataFrame | None, *, min_levels: int = 9) -> list[str]:
    """Numeric clinical columns with many distinct values (usable as a covariate)."""
    if clinical is None:
        return []
    out = []
    for c in clinical.columns:
        values = pd.to_numeric(clinical[c], errors="coerce")
        if values.notna().sum() >= 3 and values.nunique() >= min_levels:
            out.append(str(c))
    return out


def survival_columns(clinical: pd.DataFrame | None) -> tuple[list[str], list[str]]:
    """Candidate (time columns, event columns) of a clinical table: numeric / two-valued columns."""
    if clinical is None:
        return [], []
    times = [str(c) for c in clinical.columns if pd.to_numeric(clinical[c], errors="coerce").notna().sum() >= 3
             and clinical[c].nunique() > 2]
    events = [str(c) for c in clinical.columns if clinical[c].nunique(dropna=True) == 2]
    return times, events
