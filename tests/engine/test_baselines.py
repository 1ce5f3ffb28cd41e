"""Baselines on tiny synthetic mixtures with known truth."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from blue_core.engine.baselines import closed_form_gep, nnls_proportions, signature_from_reference, svr_proportions
from blue_core.exceptions import BlueInputError, GeneOverlapWarning


def _signature(n_genes: int = 60, n_types: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sig = rng.gamma(0.6, 1.0, size=(n_genes, n_types))
    # Each type gets its own marker block so the signature is well conditioned.
    for k in range(n_types):
        sig[k * 5 : (k + 1) * 5, k] += 20.0
    sig = sig / sig.sum(axis=0) * 1e6
    return pd.DataFrame(
        sig, index=[f"g{i}" for i in range(n_genes)], columns=[f"type{k}" for k in range(n_types)]
    )


def _mixtures(sig: pd.DataFrame, n: int = 8, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    theta = rng.dirichlet(np.ones(sig.shape[1]), size=n)
    bulk = theta @ sig.to_numpy().T
    samples = [f"s{i}" for i in range(n)]
    return (
        pd.DataFrame(bulk, index=samples, columns=sig.index),
        pd.DataFrame(theta, index=samples, columns=sig.columns),
    )


def test_signature_from_reference_mean_cpm() -> None:
    counts = np.array([[1, 3, 0], [2, 2, 0], [0, 0, 5], [0, 5, 5]], dtype=np.float32)
    ref = ad.AnnData(sp.csr_matrix(counts))
    ref.var_names = ["A", "B", "C"]
    ref.obs["cell_type"] = pd.Categorical(["x", "x", "y", "y"])
    sig = signature_from_reference(ref)
    assert list(sig.columns) == ["x", "y"]
    np.testing.assert_allclose(sig["x"].to_numpy(), [(0.25 + 0.5) / 2 * 1e6, (0.75 + 0.5) / 2 * 1e6, 0.0])
    np.testing.assert_allclose(sig["y"].to_numpy(), [0.0, 0.25e6, 0.75e6])
    # Gene selection keeps the CPM of the full library.
    sub = signature_from_reference(ref, genes=["C", "A"])
    assert list(sub.index) == ["C", "A"]
    np.testing.assert_allclose(sub.loc["C", "y"], 0.75e6)
    with pytest.raises(BlueInputError):
        signature_from_reference(ref, genes=["A", "Z"])


def test_nnls_exact_recovery_noise_free() -> None:
    sig = _signature()
    bulk, theta = _mixtures(sig)
    est = nnls_proportions(bulk * 37.0, sig)  # per-sample scale does not matter
    assert est.shape == theta.shape
    np.testing.assert_allclose(est.sum(axis=1), 1.0)
    np.testing.assert_allclose(est.to_numpy(), theta.to_numpy(), atol=1e-8)


def test_svr_recovers_noise_free_mixtures() -> None:
    sig = _signature()
    bulk, theta = _mixtures(sig)
    est = svr_proportions(bulk, sig)
    np.testing.assert_allclose(est.sum(axis=1), 1.0)
    assert (est.to_numpy() >= 0).all()
    np.testing.assert_allclose(est.to_numpy(), theta.to_numpy(), atol=0.02)
    assert set(est.attrs["nu"].unique()) <= {0.25, 0.5, 0.75}


def test_baselines_ignore_extra_bulk_genes_and_warn_on_low_overlap() -> None:
    sig = _signature()
    bulk, theta = _mixtures(sig)
    bulk["extra"] = 5.0
    np.testing.assert_allclose(nnls_proportions(bulk, sig).to_numpy(), theta.to_numpy(), atol=1e-8)
    with pytest.warns(GeneOverlapWarning):
        nnls_proportions(bulk.iloc[:, :20], sig)
    with pytest.raises(BlueInputError):
        nnls_proportions(bulk.T, sig)
    with pytest.raises(BlueInputError):
        svr_proportions(bulk, sig, nus=(0.0,))


def test_closed_form_gep_exact_and_conserves_bulk() -> None:
    sig = _signature()
    bulk, theta = _mixtures(sig)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Z = closed_form_gep(bulk, theta, signature=sig)
    assert Z.shape == (8, 4, 60)
    # Sum over cell types gives back the bulk.
    np.testing.assert_allclose(Z.sum(axis=1), bulk.to_numpy(), rtol=1e-10)
    # Noise-free mixture: each type's contribution is exactly theta_k * phi_k.
    expected = theta.to_numpy()[:, :, None] * sig.to_numpy().T[None]
    np.testing.assert_allclose(Z, expected, rtol=1e-10)
    # CPM normalisation returns the type's own profile.
    Zc = closed_form_gep(bulk, theta, signature=sig, normalize="cpm")
    np.testing.assert_allclose(Zc, np.broadcast_to(sig.to_numpy().T, Zc.shape), rtol=1e-10)


def test_closed_form_gep_input_checks() -> None:
    sig = _signature()
    bulk, theta = _mixtures(sig)
    with pytest.raises(BlueInputError):
        closed_form_gep(bulk.drop(columns="g0"), theta, signature=sig)
    with pytest.raises(BlueInputError):
        closed_form_gep(bulk, theta.iloc[::-1], signature=sig)
    with pytest.raises(BlueInputError):
        closed_form_gep(bulk, theta, signature=sig, normalize="log")  # type: ignore[arg-type]
