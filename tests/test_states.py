"""Issue 11: state-varying simulation (per-sample Dirichlet weights over cell states within a type)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from blue_core.exceptions import BlueInputError
from blue_core.simulation import simulate


def _two_states(seed: int = 0) -> ad.AnnData:
    """type0 has two planted states (genes 0-9 high in state A, 10-19 high in state B); type1 is plain."""
    rng = np.random.default_rng(seed)
    n, g = 200, 60
    rates = np.full((n, g), 2.0)
    state = np.array(["A", "B"] * (n // 2))
    types = np.array(["type0"] * 120 + ["type1"] * 80)
    rates[(types == "type0") & (state == "A"), :10] = 30.0
    rates[(types == "type0") & (state == "B"), 10:20] = 30.0
    rates[types == "type1", 40:50] = 30.0
    counts = rng.poisson(rates).astype(np.float32)
    obs = pd.DataFrame({"cell_type": pd.Categorical(types), "condition": state}, index=[f"c{i}" for i in range(n)])
    return ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(g)]))


def _type0_variance(pb) -> float:
    k = pb.cell_types.index("type0")
    present = pb.proportions["type0"].to_numpy() > 0.2
    profile = np.log1p(pb.profiles[present, k, :20])
    return float(profile.var(axis=0).mean())


@pytest.mark.parametrize("mode", [dict(state_key="condition"), dict(n_states=2)])
def test_state_varying_profiles_vary_more_than_resampling(mode):
    ref = _two_states()
    plain = simulate(ref, 300, cells_per_sample=100, seed=0)
    varying = simulate(ref, 300, cells_per_sample=100, seed=0, state_alpha=0.3, **mode)
    assert _type0_variance(varying) > 5 * _type0_variance(plain)
    assert np.allclose(varying.proportions.sum(axis=1), 1.0)
    # targets stay each sample's own type mean: state A samples show genes 0-9, B samples 10-19
    k = varying.cell_types.index("type0")
    a_share = varying.profiles[:, k, :10].sum(axis=1) / np.maximum(varying.profiles[:, k, :20].sum(axis=1), 1)
    assert (a_share > 0.8).any() and (a_share < 0.2).any()


def test_single_state_samples():
    ref = _two_states()
    pb = simulate(ref, 200, cells_per_sample=100, seed=1, state_key="condition", single_state_fraction=1.0)
    k = pb.cell_types.index("type0")
    a_share = pb.profiles[:, k, :10].sum(axis=1) / np.maximum(pb.profiles[:, k, :20].sum(axis=1), 1)
    has = pb.proportions["type0"].to_numpy() > 0.05
    assert np.all((a_share[has] > 0.9) | (a_share[has] < 0.1))  # every sample from one condition only


def test_state_mode_is_deterministic_and_checked():
    ref = _two_states()
    a = simulate(ref, 50, seed=3, n_states=2)
    b = simulate(ref, 50, seed=3, n_states=2)
    assert np.array_equal(a.bulk, b.bulk)
    with pytest.raises(BlueInputError, match="state_key"):
        simulate(ref, 10, state_key="nope")


def test_card_records_the_simulation_mode():
    from blue_core.training import train_model

    model = train_model(_two_states(), name="states", n_samples=64, n_validation_samples=32, cells_per_sample=30,
                        epochs=1, proportion_epochs=1, batch_size=32, n_markers=5, n_output_genes=30,
                        min_fold_change=1.0, network=dict(hidden=8, signal_length=16, base_channels=2, depth=2),
                        simulation=dict(state_key="condition", state_alpha=0.3))
    assert model.card["training"]["simulation"] == {"state_key": "condition", "state_alpha": 0.3}


def test_gep_only_simulation_leaves_the_proportion_branch_unchanged():
    import torch

    from blue_core.training import train_model

    settings = dict(name="h", n_samples=64, n_validation_samples=32, cells_per_sample=30, epochs=1, proportion_epochs=2,
                    batch_size=32, n_markers=5, n_output_genes=30, min_fold_change=1.0, seed=4,
                    network=dict(hidden=8, signal_length=16, base_channels=2, depth=2, dropout=0.0))
    plain = train_model(_two_states(), **settings)
    hybrid = train_model(_two_states(), gep_simulation={"n_states": 2, "state_alpha": 0.3}, **settings)
    for (name, a), b in zip(plain.network.state_dict().items(), hybrid.network.state_dict().values()):
        if name.startswith("proportion_mlp"):
            assert torch.equal(a, b), name
    assert not torch.equal(plain.network.to_genes.weight, hybrid.network.to_genes.weight)
    assert hybrid.card["training"]["gep_simulation"] == {"n_states": 2, "state_alpha": 0.3}
