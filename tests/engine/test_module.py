"""BlueNet shape table and bad-parameter table (MONAI style)."""

from __future__ import annotations

import pytest
import torch

from blue_core.engine.network import BlueNet

SHAPES = [
    # (constructor kwargs, batch, expected proportions shape, expected GEP shape)
    (dict(n_input_genes=30, n_output_genes=50, n_cell_types=3, signal_length=16, base_channels=4, depth=2), 5,
     (5, 3), (5, 3, 50)),
    (dict(n_input_genes=7, n_output_genes=11, n_cell_types=2, signal_length=8, base_channels=2, depth=3), 1,
     (1, 2), (1, 2, 11)),
    (dict(n_input_genes=64, n_output_genes=20, n_cell_types=9, hidden=32, n_layers=3, signal_length=32,
          base_channels=8, depth=1, kernel_size=3), 4, (4, 9), (4, 9, 20)),
]


@pytest.mark.parametrize("kwargs, batch, p_shape, g_shape", SHAPES)
def test_shapes_and_invariants(kwargs, batch, p_shape, g_shape):
    torch.manual_seed(0)
    net = BlueNet(**kwargs).eval()
    p, g = net(torch.randn(batch, kwargs["n_input_genes"]))
    assert tuple(p.shape) == p_shape and tuple(g.shape) == g_shape
    assert (p >= 0).all() and torch.allclose(p.sum(1), torch.ones(batch))
    assert (g >= 0).all()


BAD = [
    (dict(n_input_genes=0, n_output_genes=5, n_cell_types=3), "n_input_genes must be an integer >= 1"),
    (dict(n_input_genes=5, n_output_genes=5, n_cell_types=1), "n_cell_types must be an integer >= 2"),
    (dict(n_input_genes=5, n_output_genes=5, n_cell_types=3, signal_length=20, depth=3), "multiple of 2\\*\\*depth"),
    (dict(n_input_genes=5, n_output_genes=5, n_cell_types=3, kernel_size=4), "kernel_size must be odd"),
    (dict(n_input_genes=5, n_output_genes=5, n_cell_types=3, depth=0), "depth must be an integer >= 1"),
    (dict(n_input_genes=5, n_output_genes=5, n_cell_types=3, dropout=1.0), "dropout"),
    (dict(n_input_genes=5.0, n_output_genes=5, n_cell_types=3), "n_input_genes must be an integer"),
]


@pytest.mark.parametrize("kwargs, match", BAD)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlueNet(**kwargs)


def test_gradients_reach_both_branches():
    net = BlueNet(10, 12, 3, signal_length=16, base_channels=2, depth=2)
    p, g = net(torch.randn(4, 10))
    (p[:, 0].sum() + g.sum()).backward()
    assert net.proportion_mlp[1].weight.grad.abs().sum() > 0
    assert net.projection[1].weight.grad.abs().sum() > 0


def test_type_baseline_initialisation():
    net = BlueNet(6, 4, 2, signal_length=8, base_channels=2, depth=1, dropout=0.0).eval()
    mean = torch.tensor([[0.5, 1.0, 5.0, 10.0], [2.0, 3.0, 4.0, 0.5]])
    net.init_type_baseline(mean)
    assert torch.allclose(torch.nn.functional.softplus(net.type_bias), mean, atol=1e-4)
    _, gep = net(torch.zeros(3, 6))
    assert torch.allclose(gep.mean(0), mean, atol=0.5)  # the output starts near each type's baseline
    with pytest.raises(ValueError, match="shape"):
        net.init_type_baseline(torch.zeros(3, 4))


def test_network_defaults_have_one_home():
    """Issue 12: BlueNet's signature, train_model and recipes take their defaults from NetworkConfig."""
    import inspect

    from blue_core.engine.config import NetworkConfig
    from blue_core.exceptions import BlueInputError
    from blue_core.engine.network import BlueNet
    from blue_core.engine.training import DEFAULT_NETWORK

    signature = inspect.signature(BlueNet.__init__).parameters
    for name, value in NetworkConfig().as_dict().items():
        assert signature[name].default == value == DEFAULT_NETWORK[name], name
    assert NetworkConfig.from_dict({"hidden": 64}).hidden == 64
    with pytest.raises(BlueInputError, match="unknown network setting"):
        NetworkConfig.from_dict({"hiden": 64})
