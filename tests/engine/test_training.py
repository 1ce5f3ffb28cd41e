"""train_model on a tiny synthetic reference (one or two epochs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _engine_data import synthetic_reference

from blue_core.exceptions import BlueInputError
from blue_core.engine.model import BlueModel
from blue_core.engine.fitting import blue_loss
from blue_core.engine.training import train_model

TINY_NET = dict(hidden=16, signal_length=16, base_channels=2, depth=2)


def tiny_train(**kwargs):
    ref = synthetic_reference(n_cells=150, n_genes=60, seed=1)
    settings = dict(n_samples=96, n_validation_samples=32, cells_per_sample=30, epochs=1, proportion_epochs=2, batch_size=32,
                    network=TINY_NET, n_markers=10, n_output_genes=40, threads=1)
    settings.update(kwargs)
    return train_model(ref, **settings)


def test_loss_parts_and_masking():
    p = torch.tensor([[0.5, 0.5, 0.0]])
    g = torch.zeros(1, 3, 4)
    pred_g = torch.ones(1, 3, 4)
    loss = blue_loss(p, pred_g, proportions=p, gep=g, proportion_weight=100.0)
    assert loss.proportion.item() == 0.0
    assert loss.gep.item() == pytest.approx(2.0)  # the absent third type does not count
    assert loss.total.item() == pytest.approx(2.0)
    loss2 = blue_loss(torch.tensor([[1.0, 0.0, 0.0]]), pred_g, proportions=p, gep=g, proportion_weight=10.0)
    assert loss2.total.item() == pytest.approx(loss2.gep.item() + 10.0 * loss2.proportion.item())


def test_gep_loss_is_weighted_by_cell_fraction():
    p = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    g = torch.zeros(2, 2, 3)
    pred = torch.zeros(2, 2, 3)
    pred[1, 0] = 1.0  # error only where type0 has 10 % of the cells
    loss = blue_loss(p, pred, proportions=p, gep=g)
    assert loss.gep.item() == pytest.approx(0.1)  # (0.9 * 0 + 0.1 * 1) / (0.9 + 0.1)


def test_train_model_returns_a_usable_model():
    model = tiny_train(provenance={"dataset": "synthetic"}, name="tiny", tissue="test")
    assert isinstance(model, BlueModel)
    assert model.cell_types == ["type0", "type1", "type2"]
    assert len(model.output_genes) <= 60 and set(model.input_genes) <= set(model.output_genes)
    card = model.card
    assert card["provenance"] == {"dataset": "synthetic"} and card["tissue"] == "test"
    assert {"proportion_ccc", "fit_r_threshold", "gep_pearson_log1p_median"} <= set(card["validation"])
    assert card["training"]["epochs_run"] == 1
    assert model.preprocessing["log1p"] is True


def test_training_is_deterministic():
    a, b = tiny_train(seed=3), tiny_train(seed=3)
    for (name, wa), wb in zip(a.network.state_dict().items(), b.network.state_dict().values()):
        assert torch.equal(wa, wb), name


def test_simulation_options_pass_through():
    model = tiny_train(simulation={"gene_noise_sd": 0.3, "sparse_fraction": 0.5})
    assert model.card["training"]["simulation"] == {"gene_noise_sd": 0.3, "sparse_fraction": 0.5}


def test_input_panel_restricts_input_genes():
    ref = synthetic_reference(n_cells=150, n_genes=60, seed=1)
    panel = list(ref.var_names[::2])
    model = tiny_train(input_panel=panel)
    assert set(model.input_genes) <= set(panel)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"epochs": 0}, "epochs"),
        ({"simulation": {"seed": 3}}, "may not set"),
        ({"input_genes": ["NOT_A_GENE"] * 3}, "not in the reference"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(BlueInputError, match=match):
        tiny_train(**kwargs)


def test_single_cell_type_is_refused():
    ref = synthetic_reference(n_types=2)
    ref = ref[ref.obs["cell_type"] == "type0"].copy()
    with pytest.raises(BlueInputError, match="at least 2"):
        train_model(ref, epochs=1)


def test_configs_and_the_old_keywords_train_the_same_model():
    """Issue 23.3: train_model takes one frozen config per part of the run; the old keyword names still work and
    give the identical model; an unknown setting is refused with the valid ones."""
    from blue_core.engine.config import GeneSelection, NetworkConfig, SimulationConfig, TrainConfig

    ref = synthetic_reference(n_cells=150, n_genes=80, seed=0)
    net = dict(hidden=16, signal_length=16, base_channels=2, depth=2)
    old = train_model(ref, n_markers=4, n_output_genes=30, n_samples=64, n_validation_samples=32, cells_per_sample=30,
                      epochs=1, proportion_epochs=2, batch_size=32, lr=2e-3, seed=3, threads=1, network=net,
                      simulation={"dirichlet_alpha": 0.5}, name="old")
    new = train_model(ref, genes=GeneSelection(n_markers=4, n_output_genes=30),
                      simulation=SimulationConfig(n_samples=64, n_validation_samples=32, cells_per_sample=30,
                                                  options={"dirichlet_alpha": 0.5}),
                      training=TrainConfig(epochs=1, proportion_epochs=2, batch_size=32, lr=2e-3, seed=3, threads=1),
                      network=NetworkConfig(**net), name="new")
    assert old.input_genes == new.input_genes and old.output_genes == new.output_genes
    assert all(torch.equal(v, new.network.state_dict()[k]) for k, v in old.network.state_dict().items())
    assert old.card["training"]["simulation"] == new.card["training"]["simulation"] == {"dirichlet_alpha": 0.5}
    with pytest.raises(BlueInputError, match=r"unknown setting\(s\) \['n_marker'\]"):
        train_model(ref, n_marker=4)
    with pytest.raises(BlueInputError, match="unknown training setting"):
        TrainConfig.from_dict({"epoch": 1})


def test_leakage_penalty_measures_the_gap_to_the_targets_correlation():
    """Issue 25 candidate 4: zero when the prediction follows the fraction as much as its target does; positive when
    it follows it more; types present in fewer than 8 samples do not count; the gradient reaches the prediction."""
    from blue_core.engine.fitting import leakage_penalty

    gen = torch.Generator().manual_seed(0)
    n, k, g = 32, 2, 5
    p = torch.rand(n, k, generator=gen) * 0.5 + 0.1
    target = torch.rand(n, k, g, generator=gen)
    assert leakage_penalty(target, target, fraction=p, proportions=p).item() == pytest.approx(0.0, abs=1e-6)
    leaky = (target + 5.0 * p[:, :, None]).requires_grad_(True)
    penalty = leakage_penalty(leaky, target, fraction=p, proportions=p)
    assert penalty.item() > 0.5
    penalty.backward()
    assert torch.isfinite(leaky.grad).all() and leaky.grad.abs().sum() > 0
    rare = p.clone()
    rare[8:, 1] = 0.0  # type 1 present in 8 samples: counts; in 7: does not
    one = leakage_penalty(target + 5.0 * p[:, :, None], target, fraction=p, proportions=rare).item()
    rare[7, 1] = 0.0
    only_type0 = leakage_penalty(target + 5.0 * p[:, :, None], target, fraction=p, proportions=rare).item()
    assert 0 < only_type0 < one


def test_decorrelation_penalty_trains_and_is_recorded():
    from blue_core.engine.config import TrainConfig

    plain, penalised = tiny_train(seed=2), tiny_train(seed=2, training=TrainConfig(
        epochs=1, proportion_epochs=2, batch_size=32, threads=1, seed=2, gep_decorrelation=1.0))
    assert "gep_decorrelation" not in plain.card["training"]
    assert penalised.card["training"]["gep_decorrelation"] == 1.0
    same = [torch.equal(v, penalised.network.state_dict()[name]) for name, v in plain.network.state_dict().items()]
    assert not all(same)  # the GEP branch's parameters moved differently
    with pytest.raises(BlueInputError, match="gep_decorrelation"):
        TrainConfig(gep_decorrelation=-1.0)
