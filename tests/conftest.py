"""Shared test setup: the helper modules (``_engine_data``, ``_app_helpers``) importable from every test
folder (``engine/``, ``app/``, ``e2e/``), and the tiny trained model several engine tests start from."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
# as the CLI and the app set it for their processes (the library does not): spin-waiting OpenMP threads slow
# torch ~10x on a busy CPU
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: The smallest useful training run (seconds on one thread); tests override what they vary.
TINY_TRAINING: dict[str, Any] = dict(
    n_samples=64, n_validation_samples=32, cells_per_sample=30, epochs=1, proportion_epochs=2, batch_size=32,
    network=dict(hidden=16, signal_length=16, base_channels=2, depth=2), threads=1,
)


@functools.lru_cache(maxsize=8)
def _tiny(n_genes: int, seed: int, n_markers: int, bulk_seed: int, n_bulk: int, extra: tuple) -> tuple:
    from _engine_data import synthetic_reference

    from blue_core.engine.simulation import simulate
    from blue_core.engine.training import train_model

    ref = synthetic_reference(n_cells=150, n_genes=n_genes, seed=seed)
    model = train_model(ref, n_markers=n_markers, name="tiny", **{**TINY_TRAINING, **dict(extra)})
    bulk = simulate(ref, n_bulk, cells_per_sample=30, seed=bulk_seed).bulk_frame()
    return model, bulk


@pytest.fixture(scope="session")
def tiny_trained():
    """Factory ``tiny_trained(n_genes=, seed=, n_markers=, bulk_seed=, n_bulk=, **train_model options)`` ->
    ``(model, bulk)``: a tiny model on a synthetic reference and simulated bulk samples (cached per arguments;
    treat both as read-only)."""

    def make(*, n_genes: int = 80, seed: int = 4, n_markers: int = 20, bulk_seed: int = 8, n_bulk: int = 10,
             **options: Any) -> tuple:
        return _tiny(n_genes, seed, n_markers, bulk_seed, n_bulk, tuple(sorted(options.items())))

    return make
