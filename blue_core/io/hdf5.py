"""The one rule for opening an HDF5 file (h5ad, ARCHS4-layout archives, references, bundles, results).

HDF5 can make a file read *other* files transparently: a dataset with **external storage** keeps its
bytes in a named outside file (``/etc/passwd`` becomes sample names), an **external link** makes a
group of another file look like part of this one, and a **virtual dataset** maps other files' data
into its own. A filter that the library does not build in makes HDF5 look for a plugin on the
server's plugin path, and a **user block** hides arbitrary bytes in front of the superblock. None of
these is ever written by anndata or by BLUE, so every HDF5 the code reads passes :func:`check_hdf5`
before any dataset is read, and is refused with a one-line message naming the object and the reason.

Reading goes through :func:`open_hdf5` (an ``h5py.File``) or :func:`read_h5ad` (an AnnData) only, and the one
writer that fills an h5ad BLUE has just written block by block is :func:`add_dense_arrays`;
``tests/engine/test_house.py`` fails when other code calls ``h5py.File`` or ``anndata.read_h5ad``.
"""

from __future__ import annotations

import io as _io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from ..exceptions import BlueInputError

if TYPE_CHECKING:  # pragma: no cover
    import anndata
    import h5py

__all__ = ["HDF5Source", "check_hdf5", "check_signature", "open_hdf5", "read_h5ad", "add_dense_arrays",
           "HDF5_SIGNATURE"]

HDF5Source = Union[str, os.PathLike, bytes, bytearray]

#: The first 8 bytes of an HDF5 file without a user block.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: Filters built into HDF5/h5py (deflate, shuffle, fletcher32, szip, nbit, scaleoffset, lzf). Any other
#: id makes HDF5 search the plugin path for a shared library, so it is refused.
_BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})

_FIX = "BLUE reads only self-contained HDF5 files; re-save the data with anndata (adata.write_h5ad) and upload that."


def _refuse(name: str, reason: str) -> BlueInputError:
    return BlueInputError(f"{name}: refused: {reason}. {_FIX}")


def check_signature(data: bytes, *, name: str) -> None:
    """Refuse bytes that are not an HDF5 file starting at byte 0 (a user block moves the signature to 512, 1024...).

    Raises
    ------
    BlueInputError
        "refused: ... user block" when the signature sits behind one, else "not an HDF5 .h5ad file".
    """
    if bytes(data[:8]) == HDF5_SIGNATURE:
        return
    offset = 512
    while offset + 8 <= min(len(data), 1 << 24):
        if bytes(data[offset:offset + 8]) == HDF5_SIGNATURE:
            raise _refuse(name, f"the file has a {offset:,}-byte user block before its HDF5 data")
        offset *= 2
    raise BlueInputError(f"{name} is not an HDF5 .h5ad file. Save the AnnData with adata.write_h5ad() or use CSV.")


def check_hdf5(handle: "h5py.File", *, name: str) -> None:
    """Refuse an HDF5 file that could read anything outside itself. Reads no dataset.

    Checks, in this order: the driver is h5py's default (``sec2`` for paths, ``fileobj`` for bytes);
    no user block; no external link anywhere (links are listed without being followed); every soft
    link resolves to an object inside the file; no dataset has external storage, a virtual layout
    or a filter that is not built in.

    Parameters
    ----------
    handle
        An open ``h5py.File`` (read mode).
    name
        The file's name as the user knows it, for the message.

    Raises
    ------
    BlueInputError
        One line naming the object (e.g. ``/obs/_index``) and why it is refused.
    """
    import h5py

    if handle.driver not in ("sec2", "fileobj"):
        raise _refuse(name, f"the file asks for the HDF5 driver {handle.driver!r}")
    if int(handle.userblock_size or 0):
        raise _refuse(name, f"the file has a {handle.userblock_size:,}-byte user block before its HDF5 data")
    links: list[tuple[str, Any]] = []
    handle.visititems_links(lambda path, link: links.append((path, link)))  # lists links; follows none
    for path, link in links:
        if isinstance(link, h5py.ExternalLink):
            raise _refuse(name, f"the HDF5 link '/{path}' points into another file ({link.filename!r}, {link.path!r})")
    for path, link in links:
        if isinstance(link, h5py.SoftLink) and link.path not in handle:  # safe: no external link exists
            raise _refuse(name, f"the HDF5 soft link '/{path}' points to {link.path!r}, which is not in the file")
    def problem(path: str, obj: Any) -> str | None:
        """Why the object is refused, or None (visititems stops at the first non-None answer)."""
        if not isinstance(obj, h5py.Dataset):
            return None
        plist = obj.id.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL:
            return f"the dataset '/{path}' is a virtual dataset, which maps data from other files"
        if plist.get_external_count():
            outside = plist.get_external(0)[0]
            outside = outside.decode(errors="replace") if isinstance(outside, bytes) else str(outside)
            return f"the dataset '/{path}' keeps its data in an outside file ({outside!r})"
        for i in range(plist.get_nfilters()):
            code = int(plist.get_filter(i)[0])
            if code not in _BUILTIN_FILTERS:
                return f"the dataset '/{path}' uses HDF5 filter {code}, which would load a plugin"
        return None

    reason = handle.visititems(problem)  # every object once, over hard links only
    if reason:
        raise _refuse(name, reason)


def open_hdf5(source: HDF5Source, *, name: str | None = None) -> "h5py.File":
    """Open an HDF5 file read-only after :func:`check_hdf5` passed (the caller closes it).

    Parameters
    ----------
    source
        A path, or the file's bytes.
    name
        Name for messages (default: the path's name, or ``"the file"``).

    Returns
    -------
    h5py.File
        Open in ``"r"`` mode with the default driver.

    Raises
    ------
    BlueInputError
        Not HDF5 (bytes: :func:`check_signature`), unreadable, or refused by :func:`check_hdf5`.
    """
    import h5py

    is_bytes = isinstance(source, (bytes, bytearray))
    label = name or ("the file" if is_bytes else Path(source).name)
    if is_bytes:
        check_signature(source, name=label)
    try:
        handle = h5py.File(_io.BytesIO(bytes(source)) if is_bytes else source, "r")
    except (OSError, ValueError) as err:
        raise BlueInputError(f"{label} could not be read as an HDF5 file ({err}). Re-save it with anndata or h5py.") from None
    try:
        check_hdf5(handle, name=label)
    except BaseException:
        handle.close()
        raise
    return handle


def read_h5ad(
    source: HDF5Source, *, name: str | None = None, backed: Literal["r"] | None = None
) -> "anndata.AnnData":
    """Read an AnnData ``.h5ad`` after :func:`check_hdf5` passed (HDF5 only; nothing is unpickled).

    Parameters
    ----------
    source
        A path, or the file's bytes (written to a private temporary file first; not with ``backed``).
    name
        Name for messages.
    backed
        ``"r"``: keep ``X`` on disk (a path only).

    Returns
    -------
    anndata.AnnData

    Raises
    ------
    BlueInputError
        Not an h5ad, refused by :func:`check_hdf5`, or anndata cannot read it.
    """
    import anndata

    if isinstance(source, (bytes, bytearray)):
        if backed:
            raise ValueError("read_h5ad(backed='r') needs a path, not bytes")
        label = name or "the file"
        check_signature(source, name=label)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "input.h5ad"
            path.write_bytes(bytes(source))
            return read_h5ad(path, name=label)
    label = name or Path(source).name
    open_hdf5(source, name=label).close()
    try:
        return anndata.read_h5ad(source, backed=backed)
    except BlueInputError:
        raise
    except Exception as err:  # h5py/anndata raise many types for malformed files
        raise BlueInputError(f"{label} could not be read as an AnnData .h5ad file ({err}). Re-save it with anndata.") from None


def add_dense_arrays(path: str | os.PathLike, arrays: dict[str, tuple[tuple[int, int], str]], *,
                     compression: Literal["gzip"] | None = None) -> Any:
    """Add dense arrays to an h5ad this process has just written (anndata's encoding, so ``read_h5ad`` reads them),
    to be filled block by block: a result too large to hold in memory is written one chunk of rows at a time.

    Parameters
    ----------
    path
        The h5ad (written by ``AnnData.write_h5ad`` without these arrays).
    arrays
        ``{"X": ((n, G), "float32"), "layers/<key>": (...), ...}``.
    compression
        HDF5 compression of the new arrays.

    Returns
    -------
    context manager
        Yields ``{name: h5py.Dataset}``; the file is closed (and flushed) on exit.
    """
    import contextlib

    import h5py

    @contextlib.contextmanager
    def opened() -> Any:
        with h5py.File(path, "a") as f:
            datasets = {}
            for name, (shape, dtype) in arrays.items():
                rows = max(1, min(shape[0], 1024))
                d = f.create_dataset(name, shape=shape, dtype=dtype, chunks=(rows, shape[1]) if all(shape) else None,
                                     **({"compression": compression} if compression else {}))
                d.attrs["encoding-type"], d.attrs["encoding-version"] = "array", "0.2.0"  # anndata's dense array
                datasets[name] = d
            yield datasets

    return opened()
