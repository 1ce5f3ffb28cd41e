"""h5ad files planted with the HDF5 features that read other files (issue 26), for tests and bench/security.py.

Every planter writes a small, otherwise valid bulk h5ad (4 samples x 60 genes GENE0..GENE59) and then
rewires one object with h5py so that reading it would pull bytes from ``target`` (an outside file).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

SECRET = b"root:x:0:0:SECRET-LINE-FROM-OUTSIDE:/root:/bin/bash\n"


def bulk_h5ad(path: Path, *, n_samples: int = 4, n_genes: int = 60) -> Path:
    """A plain, valid bulk h5ad (samples x genes, integer counts)."""
    rng = np.random.default_rng(0)
    adata = ad.AnnData(
        X=rng.poisson(20, size=(n_samples, n_genes)).astype(np.float32),
        obs=pd.DataFrame(index=[f"S{i}" for i in range(n_samples)]),
        var=pd.DataFrame(index=[f"GENE{j}" for j in range(n_genes)]),
    )
    adata.write_h5ad(path)
    return path


def plant_external_storage(path: Path, target: str | os.PathLike, *, adata: ad.AnnData | None = None) -> Path:
    """``obs/_index`` (the sample names) stored in ``target``: fixed-width strings read from that file.

    ``adata``: the bulk to plant into (default: :func:`bulk_h5ad`'s 4 x 60 synthetic one)."""
    if adata is None:
        bulk_h5ad(path)
    else:
        adata.write_h5ad(path)
    with h5py.File(path, "r+") as handle:
        n = handle["obs/_index"].shape[0]
        attrs = dict(handle["obs/_index"].attrs)
        del handle["obs/_index"]
        dset = handle["obs"].create_dataset("_index", shape=(n,), dtype="S13", external=[(os.fspath(target), 0, 13 * n)])
        for key, value in attrs.items():
            if key not in ("encoding-type", "encoding-version"):
                dset.attrs[key] = value
        dset.attrs["encoding-type"], dset.attrs["encoding-version"] = "array", "0.2.0"
    return path


def plant_external_link(path: Path, other: Path) -> Path:
    """``obs`` is an external link into ``other`` (another h5ad whose obs names hold the secret)."""
    bulk_h5ad(path)
    with h5py.File(path, "r+") as handle:
        del handle["obs"]
        handle["obs"] = h5py.ExternalLink(os.fspath(other), "/obs")
    return path


def plant_virtual(path: Path, other: str | os.PathLike) -> Path:
    """``X`` is a virtual dataset mapping the 4 x 60 float32 matrix ``X`` of ``other`` (not opened here)."""
    bulk_h5ad(path)
    shape, dtype = (4, 60), np.float32
    with h5py.File(path, "r+") as handle:
        attrs = dict(handle["X"].attrs)
        del handle["X"]
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[:] = h5py.VirtualSource(os.fspath(other), "X", shape=shape)
        dset = handle.create_virtual_dataset("X", layout)
        for key, value in attrs.items():
            dset.attrs[key] = value
    return path


def plant_dangling_soft_link(path: Path) -> Path:
    """``obs`` is a soft link to a path that is not in the file."""
    bulk_h5ad(path)
    with h5py.File(path, "r+") as handle:
        handle.move("obs", "obs_hidden")
        handle["obs"] = h5py.SoftLink("/nowhere/obs")
    return path


def plant_user_block(path: Path) -> Path:
    """A valid h5ad behind a 512-byte user block (HDF5 data begins after arbitrary bytes)."""
    plain = bulk_h5ad(path.with_suffix(".plain.h5ad"))
    with h5py.File(plain, "r") as src, h5py.File(path, "w", userblock_size=512) as dst:
        for key in src:
            src.copy(key, dst)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
    with open(path, "r+b") as handle:
        handle.write(b"#!/bin/sh echo hidden".ljust(64))
    plain.unlink()
    return path


class FifoWatch:
    """A named pipe as the outside file: any attempt to open it for reading is seen, and unblocked.

    Opening a FIFO for reading blocks until a writer comes; the watcher polls for a waiting reader
    (``O_WRONLY | O_NONBLOCK`` succeeds only then), records it, writes the secret and closes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody is reading
                time.sleep(0.005)
                continue
            self.opened = True
            try:
                os.write(fd, SECRET * 4)
            except OSError:
                pass
            os.close(fd)

    def __enter__(self) -> FifoWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=2)
