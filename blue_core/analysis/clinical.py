"""Clinical tables: reading an uploaded table, and which columns can serve as groups, covariates or survival.

The one home of these rules (the app, the CLI and the validation workflow use them)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..exceptions import BlueInputError

__all__ = ["is_survival_column", "read_clinical", "read_clinical_table", "guess_time_unit", "guess_column", "categorical_columns",
           "numeric_columns", "survival_columns", "TIME_COLUMNS", "EVENT_COLUMNS"]

#: Clinical columns guessed as survival time / event, in order of preference.
TIME_COLUMNS = ("os_days", "os_months", "os_time", "time", "efs_days", "os_months_cbioportal")


EVENT_COLUMNS = ("os_event", "os_status", "event", "status", "efs_event", "os_status_cbioportal")


def read_clinical(
    source: str | os.PathLike | bytes, *, filename: str | None = None, sample_col: str | None = None,
    what: str = "clinical table",
) -> pd.DataFrame:
    """Read a per-sample table (CSV/TSV/TXT, optionally .gz, or XLSX): the one reader of clinical tables.

    Parameters
    ----------
    source
        A file path, or the file's bytes (an upload; then ``filename`` gives the format).
    filename
        Name used for the format (by extension) and in messages; default: the path's name.
    sample_col
        Column holding the sample IDs; default (or when absent) the first column.
    what
        What the table is, for messages (e.g. ``"subtype table"``).

    Returns
    -------
    pandas.DataFrame
        One row per sample, index = sample IDs as strings (named ``sample``), the other columns as read.

    Raises
    ------
    BlueInputError
        Missing or unreadable file, no data column or row, or duplicated sample IDs; the message says how
        to fix it.
    """
    if isinstance(source, (bytes, bytearray)):
        data, name = io.BytesIO(bytes(source)), filename or "the uploaded file"
    else:
        path = Path(source)
        if not path.is_file():
            raise BlueInputError(f"The {what} {str(path)!r} does not exist: check the path.")
        data, name = path, filename or path.name
    lower = name.lower()
    try:
        if lower.endswith((".xlsx", ".xls")):
            table = pd.read_excel(data)
        else:
            compression = "gzip" if lower.endswith(".gz") else None
            tab = lower.removesuffix(".gz").endswith((".tsv", ".txt", ".tab"))
            table = pd.read_csv(data, sep="\t" if tab else ",", compression=compression)
    except Exception as err:  # noqa: BLE001 - any parser failure becomes a user message
        raise BlueInputError(
            f"Could not read the {what} {name!r} ({type(err).__name__}: {err}). Give a CSV, TSV or XLSX file "
            "with a header row, one row per sample and the sample ID in the first column."
        ) from None
    if table.shape[1] < 2 or table.shape[0] == 0:
        raise BlueInputError(
            f"The {what} {name!r} has no data columns or rows. Put the sample ID in the first column and the "
            "variables (e.g. os_days, os_event, HbA1c) in the following columns, one row per sample."
        )
    column = sample_col if sample_col in table.columns else table.columns[0]
    table = table.set_index(column)
    table.index = table.index.astype(str).str.strip()
    table.index.name = "sample"
    dup = table.index[table.index.duplicated()].unique()
    if len(dup):
        raise BlueInputError(
            f"The {what} {name!r} has duplicated sample IDs ({', '.join(map(str, dup[:5]))}). Keep one row per sample."
        )
    return table


def read_clinical_table(data: bytes, filename: str) -> pd.DataFrame:
    """An uploaded clinical table (bytes): :func:`read_clinical` with the sample ID in the first column.

    Returns
    -------
    pandas.DataFrame
        Index = sample IDs (``sample``), one row per sample.
    """
    return read_clinical(data, filename=filename)


def guess_time_unit(time_col: str) -> str:
    """Unit of a survival-time column read from its name: ``"months"``, ``"years"`` or else ``"days"``.

    Returns
    -------
    str
        The unit shown on the Kaplan-Meier axis and in medians.
    """
    lower = str(time_col).lower()
    return "months" if "month" in lower else "years" if "year" in lower else "days"


def guess_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    """First column whose lower-cased name is in ``candidates`` (for default selections).

    Returns
    -------
    str or None
        The column's name, or None when no column matches.
    """
    lower = {str(c).lower(): str(c) for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    return None


def categorical_columns(clinical: pd.DataFrame | None, *, max_levels: int = 8) -> list[str]:
    """Clinical columns usable as groups: 2..max_levels distinct values.

    Returns
    -------
    list of str
        Column names, in table order.
    """
    if clinical is None:
        return []
    return [str(c) for c in clinical.columns if 2 <= clinical[c].nunique(dropna=True) <= max_levels]


_SURVIVAL_WORDS = ("os_", "efs", "pfs", "dfs", "rfs", "survival", "days_to", "vital", "follow", "censor", "death")


def is_survival_column(name: str) -> bool:
    """Whether a column holds survival time or status (then it is censored: never a plain covariate).

    Returns
    -------
    bool
        True for the known time/event names and names containing survival words (os_, efs, pfs, survival,
        days_to, vital, follow-up, censor, death).
    """
    lower = str(name).lower()
    return lower in TIME_COLUMNS or lower in EVENT_COLUMNS or any(word in lower for word in _SURVIVAL_WORDS)


def numeric_columns(clinical: pd.DataFrame | None, *, min_levels: int = 9) -> list[str]:
    """Numeric clinical columns with many distinct values, usable as a covariate (survival columns left out:
    a correlation with censored survival times is not meaningful; use Kaplan-Meier / Cox instead).

    Returns
    -------
    list of str
        Column names, in table order.
    """
    if clinical is None:
        return []
    out = []
    for c in clinical.columns:
        if is_survival_column(c):
            continue
        values = pd.to_numeric(clinical[c], errors="coerce")
        if values.notna().sum() >= 3 and values.nunique() >= min_levels:
            out.append(str(c))
    return out


def survival_columns(clinical: pd.DataFrame | None) -> tuple[list[str], list[str]]:
    """Candidate (time columns, event columns) of a clinical table: numeric / two-valued columns.

    Returns
    -------
    tuple of (list of str, list of str)
        Candidate time columns and candidate event columns.
    """
    if clinical is None:
        return [], []
    times = [str(c) for c in clinical.columns if pd.to_numeric(clinical[c], errors="coerce").notna().sum() >= 3
             and clinical[c].nunique() > 2]
    events = [str(c) for c in clinical.columns if clinical[c].nunique(dropna=True) == 2]
    return times, events
