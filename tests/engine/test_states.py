"""Issue 11: state-varying simulation (per-sample Dirichlet weights over cell states within a type)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from blue_core.exceptions import BlueInputError
from blue_core.engine.simulation import simulate


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
    from blue_core.engine.training import train_model

    model = train_model(_two_states(), name="states", n_samples=64, n_validation_samples=32, cells_per_sample=30,
                        epochs=1, proportion_epochs=1, batch_size=32, n_markers=5, n_output_genes=30,
                        min_fold_change=1.0, network=dict(hidden=8, signal_length=16, base_channels=2, depth=2),
                        simulation=dict(state_key="condition", state_alpha=0.3))
    assert model.card["training"]["simulation"] == {"state_key": "condition", "state_alpha": 0.3}


def test_gep_only_simulation_leaves_the_proportion_branch_unchanged():
    import torch

    from blue_core.engine.training import train_model

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


# --- issue 11.2: condition-bearing references for the GEP branch only --------------------------------------------

_SMALL = dict(name="c", n_samples=64, n_validation_samples=32, cells_per_sample=30, epochs=1, proportion_epochs=2,
              batch_size=32, n_markers=5, n_output_genes=30, min_fold_change=1.0, seed=4,
              network=dict(hidden=8, signal_length=16, base_channels=2, depth=2, dropout=0.0))


def _main_and_condition_refs() -> tuple[ad.AnnData, ad.AnnData]:
    """Main reference: state A only, no condition column; GEP reference: both conditions."""
    ref = _two_states()
    main = ref[ref.obs["condition"].eq("A").to_numpy() | ref.obs["cell_type"].eq("type1").to_numpy()].copy()
    del main.obs["condition"]
    return main, _two_states(seed=1)


def test_gep_references_leave_the_proportion_branch_and_genes_unchanged():
    import torch

    from blue_core.engine.training import train_model

    main, conditions = _main_and_condition_refs()
    plain = train_model(main, **_SMALL)
    extra = train_model(main, gep_references={"cond": conditions},
                        gep_reference_simulation={"cond": {"state_key": "condition", "single_state_fraction": 0.5}},
                        **_SMALL)
    assert extra.input_genes == plain.input_genes and extra.output_genes == plain.output_genes
    for (name, a), b in zip(plain.network.state_dict().items(), extra.network.state_dict().values()):
        if name.startswith("proportion_mlp"):
            assert torch.equal(a, b), name
    assert not torch.equal(plain.network.to_genes.weight, extra.network.to_genes.weight)
    recorded = extra.card["training"]["gep_references"]["cond"]
    assert recorded["n_cells"] == conditions.n_obs
    assert recorded["simulation"] == {"state_key": "condition", "single_state_fraction": 0.5}
    assert plain.card["training"]["gep_references"] is None
    assert extra.card["training"]["gep_early_stopping"] == "main"
    watched_all = train_model(main, gep_references={"cond": conditions}, gep_early_stopping="all", **_SMALL)
    assert watched_all.card["training"]["gep_early_stopping"] == "all"
    with pytest.raises(BlueInputError, match="gep_early_stopping"):
        train_model(main, gep_references={"cond": conditions}, gep_early_stopping="some", **_SMALL)


def test_gep_references_are_checked():
    from blue_core.engine.training import train_model

    main, conditions = _main_and_condition_refs()
    foreign = conditions.copy()
    foreign.obs["cell_type"] = pd.Categorical(np.where(foreign.obs["cell_type"] == "type1", "typeX", "type0"))
    with pytest.raises(BlueInputError, match="typeX"):
        train_model(main, gep_references={"cond": foreign}, **_SMALL)
    with pytest.raises(BlueInputError, match="own name"):
        train_model(main, gep_references={"cond": conditions}, gep_reference_simulation={"other": {}}, **_SMALL)
    with pytest.raises(BlueInputError, match="may not set"):
        train_model(main, gep_references={"cond": conditions}, gep_reference_simulation={"cond": {"seed": 1}}, **_SMALL)


def test_transfer_labels_recovers_planted_types_without_the_excluded_genes():
    from blue_core.engine.labels import transfer_labels

    rng = np.random.default_rng(0)
    n, g = 300, 80
    types = np.array(["a", "b", "c"] * (n // 3))
    rates = np.full((n, g), 3.0)
    for k, t in enumerate("abc"):
        rates[types == t, 10 * k: 10 * k + 10] = 25.0
    ref = ad.AnnData(sp.csr_matrix(rng.poisson(rates).astype(np.float32)),
                     obs=pd.DataFrame({"cell_type": types}, index=[f"r{i}" for i in range(n)]),
                     var=pd.DataFrame(index=[f"G{j}" for j in range(g)]))
    query_rates = rates.copy()
    query_rates[:, 60:70] = np.where(types[:, None] == "a", 0.0, 80.0)  # a "stimulation" on genes 60-69
    query = ad.AnnData(sp.csr_matrix(rng.poisson(query_rates).astype(np.float32)),
                       obs=pd.DataFrame(index=[f"q{i}" for i in range(n)]), var=ref.var.copy())
    labels = transfer_labels(query, ref, exclude_genes=[f"G{j}" for j in range(60, 70)])
    assert list(labels.index) == list(query.obs_names)
    assert (labels.astype(str).to_numpy() == types).mean() > 0.95
    with pytest.raises(BlueInputError, match="shares only"):
        transfer_labels(query[:, :20].copy(), ref)


def test_split_cells_takes_a_fraction_of_each_group_reproducibly():
    from blue_core.engine.labels import split_cells

    groups = ["ctrl"] * 100 + ["stim"] * 60
    mask = split_cells(groups, fraction=0.5, seed=0)
    assert mask[:100].sum() == 50 and mask[100:].sum() == 30
    assert np.array_equal(mask, split_cells(groups, fraction=0.5, seed=0))
    assert not np.array_equal(mask, split_cells(groups, fraction=0.5, seed=1))
    with pytest.raises(BlueInputError, match="fraction"):
        split_cells(groups, fraction=1.0)
