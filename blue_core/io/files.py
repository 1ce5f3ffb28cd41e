"""Safe file handling: model names that can never become paths, all-or-nothing output folders, zips a
user uploads, and tables that cannot run formulas in a spreadsheet.

These rules live here, and only here:

* :func:`check_model_name` — a model name is a short slug (letters, digits, ``.``, ``_``, ``-``; starts
  with a letter or digit; at most 64 characters; no ``..``). A name is never joined onto a path
  without passing this check, so a name such as ``../../etc`` or ``/srv/pretrained/planted`` cannot
  place files outside the folder the code chose.
* :func:`atomic_directory` — results are written into a temporary sibling folder and renamed into
  place only when complete. An existing result is replaced only with ``overwrite=True``, and on any
  failure (disk full, interrupt, a bug) the previous result is left exactly as it was.
* :func:`write_csv` — every CSV the code writes (CLI outputs, downloads, bundles) neutralises text that a
  spreadsheet would run as a formula (:func:`neutralise_formulas`); :func:`restore_formulas` reads it back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import BlueInputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["extract_zip", "check_model_name", "is_model_name", "atomic_directory", "check_output_folder", "MODEL_NAME_RULE", "FORMULA_STARTS", "neutralise_formulas", "restore_formulas", "write_csv", "swap_in"]

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: The model-name rule in words (used in every message about a bad name).
MODEL_NAME_RULE = (
    "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'"
)


def is_model_name(name: object) -> bool:
    """True when ``name`` is a valid model name (see :data:`MODEL_NAME_RULE`).

    Returns
    -------
    bool
        Whether ``name`` is a valid model name.
    """
    return isinstance(name, str) and bool(_NAME_RE.fullmatch(name)) and ".." not in name


def check_model_name(name: object, *, what: str = "model name") -> str:
    """Return ``name`` when it is a safe model name, else raise.

    Parameters
    ----------
    name
        The proposed name (e.g. typed into the app's Train page or given as ``--name``).
    what
        How the message refers to the value.

    Returns
    -------
    str
        ``name``, unchanged.

    Raises
    ------
    BlueInputError
        The name could be read as a path or holds other characters; the message states the rule and
        suggests a cleaned-up name.
    """
    if is_model_name(name):
        return str(name)
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).replace("..", ".").strip(".-_")[:64] or "my-model"
    raise BlueInputError(
        f"{what} {str(name)[:80]!r} is not allowed: a model name is {MODEL_NAME_RULE} (it is never a path). "
        f"Try {cleaned!r}."
    )


def check_output_folder(target: str | os.PathLike, *, overwrite: bool = False, what: str = "output") -> Path:
    """Check, before any work is done, that ``target`` may be (re)written as an output folder.

    Returns
    -------
    pathlib.Path
        ``target`` as a path.

    Raises
    ------
    BlueInputError
        ``target`` is a file, or a non-empty folder and ``overwrite`` is False.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise BlueInputError(f"{what} {target} is a file, not a folder; choose a folder name (it will be created).")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise BlueInputError(
            f"{what} {target} already exists and is not empty; choose another folder or pass --overwrite "
            "(overwrite=True) to replace it."
        )
    return target


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, overwrite: bool = False, what: str = "output") -> Iterator[Path]:
    """Write a folder all at once: yield a temporary sibling, rename it to ``target`` when the block ends.

    Parameters
    ----------
    target
        The folder to create (or replace).
    overwrite
        Replace an existing non-empty ``target``. Refused by default.
    what
        How messages refer to the folder (e.g. ``"--out"``).

    Yields
    ------
    Path
        An empty temporary folder next to ``target`` (same file system, so the final rename is atomic).

    Raises
    ------
    BlueInputError
        ``target`` is a file, or a non-empty folder and ``overwrite`` is False — raised before anything
        is written.

    Notes
    -----
    With ``overwrite=True`` the old folder is first renamed aside, the new one renamed into place, then
    the old one deleted; if the second rename fails the old folder is put back. If the block raises,
    the temporary folder is removed and ``target`` is untouched.
    """
    target = check_output_folder(target, overwrite=overwrite, what=what)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    tmp.mkdir()  # honours the umask, unlike mkdtemp's 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s", target)


def swap_in(finished: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename a finished folder to ``target`` (the one home of the final step of every all-or-nothing write:
    :func:`atomic_directory` and the resumable streamed runs). An existing ``target`` is first renamed aside, then
    deleted once the new folder is in place; if that rename fails, the old folder is put back."""
    finished, target = Path(finished), Path(target)
    backup = None
    if target.exists():
        backup = _sibling(target, "old")
        os.replace(target, backup)
    try:
        os.replace(finished, target)
    except BaseException:
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _sibling(target: Path, kind: str) -> Path:
    """A fresh hidden name next to ``target`` (``.NAME.tmp-1a2b3c4d``)."""
    while True:
        candidate = target.parent / f".{target.name}.{kind}-{secrets.token_hex(4)}"
        if not candidate.exists():
            return candidate


def extract_zip(data: bytes, target: str | os.PathLike, *, allowed: Collection[str], max_bytes: int,
                what: str = "zip", hint: str = "") -> dict[str, Path]:
    """Extract the members of a user's zip that this code expects, safely (the one home of that rule).

    Only members whose path, without a single leading folder, is in ``allowed`` are accepted; any other
    member, an absolute path, ``..``, a drive letter or a link is refused. The archive's size and its members'
    total inflated size are limited by ``max_bytes`` (checked while streaming, so a lying header does not
    help). Files are written under ``target`` with the names in ``allowed`` (never the archive's paths).

    Parameters
    ----------
    data
        The archive's bytes.
    target
        Existing folder to write into (e.g. a fresh temporary folder).
    allowed
        Relative names accepted, e.g. ``{"model.json", "model.safetensors"}`` or ``{"deconvolution/fit.csv"}``.
    max_bytes
        Ceiling on the archive and on the sum of its inflated members.
    what, hint
        Name of the archive and what to upload instead, for messages.

    Returns
    -------
    dict
        Accepted name -> written path.

    Raises
    ------
    BlueInputError
        Not a zip, too large, unexpected, repeated or unsafe members.
    """
    import io
    import stat
    import zipfile

    if len(data) > max_bytes:
        raise BlueInputError(f"the {what} is {len(data) / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB limit. {hint}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BlueInputError(f"this file is not a zip archive. {hint}") from None
    written: dict[str, Path] = {}
    budget = max_bytes
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        for member in members:
            raw = member.filename.replace("\\", "/")
            parts = raw.split("/")
            relative = "/".join(parts[1:]) if len(parts) > 1 and "/".join(parts[1:]) in allowed else raw
            if raw.startswith("/") or ".." in parts or ":" in raw or stat.S_ISLNK(member.external_attr >> 16) \
                    or relative not in allowed:
                raise BlueInputError(f"the {what} holds an unexpected entry {member.filename!r}. {hint}")
            if relative in written:
                raise BlueInputError(f"the {what} holds {relative} twice. {hint}")
            if member.file_size > budget:
                raise BlueInputError(f"the {what}'s files would take more than {max_bytes / 1e6:.0f} MB. {hint}")
            path = Path(target).joinpath(*relative.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(path, "wb") as sink:
                while chunk := source.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:  # the declared size lied
                        raise BlueInputError(f"the {what} inflates past the {max_bytes / 1e6:.0f} MB limit. {hint}")
                    sink.write(chunk)
            written[relative] = path
    return written


# ------------------------------------------------------------------ spreadsheet formulas in written tables
#: Text starting with one of these is a formula to Excel / LibreOffice (OWASP "CSV injection"); a
#: leading apostrophe is the standard neutraliser (it marks the cell as text and is not displayed).
#: A text already starting with an apostrophe gets one more, so :func:`restore_formulas` is exact.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def _neutral(value: object) -> object:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _restored(value: object) -> object:
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def _map_text(frame: "pd.DataFrame", func: "Callable[[object], object]") -> "pd.DataFrame":
    import pandas as pd

    out = frame.copy()
    out.columns = pd.Index([func(c) for c in out.columns], name=func(out.columns.name))
    out.index = pd.Index([func(i) for i in out.index], name=func(out.index.name))
    for column in out.columns:  # object and string columns (is_string_dtype), and categoricals
        if pd.api.types.is_string_dtype(out[column].dtype) or isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = [func(v) for v in out[column].astype(object)]
    return out


def neutralise_formulas(frame: "pd.DataFrame") -> "pd.DataFrame":
    """A copy of ``frame`` safe to open in a spreadsheet: text cells, column names and index labels that
    start with ``=``, ``+``, ``-``, ``@``, tab, carriage return (or an apostrophe) get a leading ``'``.
    Numbers are unchanged (``-0.5`` the number is not text). Used for every CSV/TSV the code writes;
    h5ad and parquet keep names unchanged.

    Returns
    -------
    pandas.DataFrame
        The safe copy (``frame`` is not changed).
    """
    return _map_text(frame, _neutral)


def restore_formulas(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Undo :func:`neutralise_formulas` on a table read back from a CSV the code wrote (exact inverse).

    Returns
    -------
    pandas.DataFrame
        The table as it was before :func:`neutralise_formulas`.
    """
    return _map_text(frame, _restored)


def write_csv(frame: "pd.DataFrame", target: "str | os.PathLike | Any" = None, **options: Any) -> str | None:
    """``frame.to_csv(target, **options)`` after :func:`neutralise_formulas` (the one CSV writer).

    Returns
    -------
    str or None
        The CSV text when ``target`` is None (a download), else None.
    """
    return neutralise_formulas(frame).to_csv(target, **options)
