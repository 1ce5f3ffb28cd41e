"""The simulation bank a model carries for cohort adaptation (``adaptation.safetensors``; see ``adaptation.py``).

Kept apart from ``adaptation.py`` so that ``model.py`` (which loads and saves it) and ``adaptation.py`` (which
uses it) do not import each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import BlueModelError

__all__ = ["SimulationBank", "read_bank", "write_bank"]


@dataclass(frozen=True)
class SimulationBank:
    """Pseudo-bulks a model carries for adaptation.

    Attributes
    ----------
    values
        ``(n, G_in)`` float32, summed counts of the simulated cells over the model's input genes (linear).
    proportions
        ``(n, K)`` float32 cell fractions in the model's cell-type order; rows sum to 1.
    """

    values: np.ndarray
    proportions: np.ndarray

    @property
    def n_samples(self) -> int:
        """Number of pseudo-bulks."""
        return int(self.values.shape[0])


def write_bank(bank: SimulationBank, path: str | Path) -> str:
    """Write a bank as safetensors (``values``, ``proportions``); returns its sha256 (hex).

    Returns
    -------
    str
        The sha256 (hex) of the file written.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"values": np.ascontiguousarray(bank.values, dtype=np.float32),
               "proportions": np.ascontiguousarray(bank.proportions, dtype=np.float32)}, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(path)
    return digest


def read_bank(path: str | Path, *, n_input_genes: int, n_cell_types: int, sha256: str | None = None) -> SimulationBank:
    """Read a bank written by :func:`write_bank` and check it fits the model (shapes, sha256, values).

    Returns
    -------
    SimulationBank
        The bank's pseudo-bulks (``values``, ``(n, G_in)``) and their proportions (``(n, K)``).

    Raises
    ------
    BlueModelError
        Missing, corrupted or mismatched bank; the message says how to restore it.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise BlueModelError(f"{path} is missing; the model card lists an adaptation bank. Restore the file "
                             "or rebuild the model (blue train --recipe ...).")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise BlueModelError(f"{path} does not match its model card (sha256); the file is corrupted or was "
                             "replaced. Restore it or rebuild the model.")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise BlueModelError(f"{path} cannot be read as safetensors ({err}); restore it or rebuild.") from err
    values, props = tensors.get("values"), tensors.get("proportions")
    ok = (values is not None and props is not None and values.ndim == 2 and props.ndim == 2
          and values.shape == (props.shape[0], n_input_genes) and props.shape[1] == n_cell_types
          and np.isfinite(values).all() and (values >= 0).all() and np.isfinite(props).all())
    if not ok:
        raise BlueModelError(f"{path} does not fit the model ({n_input_genes} input genes, {n_cell_types} cell "
                             "types, finite non-negative values); rebuild the model.")
    return SimulationBank(values.astype(np.float32), props.astype(np.float32))
