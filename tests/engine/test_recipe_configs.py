"""Issue 23.3: a recipe's sections become the configs train_model takes (one set of defaults, no legacy keywords)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blue_core.engine.config import GeneSelection, SimulationConfig, TrainConfig
from blue_core.engine.recipe_data import read_recipe
from blue_core.engine.recipes import recipe_configs
from blue_core.exceptions import BlueInputError

REPO = Path(__file__).resolve().parents[2]


def test_a_shipped_recipe_maps_onto_the_configs():
    recipe = read_recipe(REPO / "pretrained" / "pbmc" / "recipe.toml")
    genes, simulation, training, network = recipe_configs(recipe, input_genes=None)
    assert genes.n_output_genes == recipe["genes"]["max_output_genes"]
    assert genes.outputs_include_inputs is False
    assert dict(genes.output_selection) == {"n_per_cell_type": recipe["genes"]["n_output_per_cell_type"],
                                            "n_variable": recipe["genes"]["n_output_variable"]}
    # [training] holds the pseudo-bulk counts too: they go to SimulationConfig, the rest to TrainConfig
    assert simulation.n_samples == recipe["training"]["n_samples"]
    assert simulation.cells_per_sample == recipe["training"]["cells_per_sample"]
    assert dict(simulation.options) == dict(recipe["simulation"])
    assert training.epochs == recipe["training"]["epochs"] and training.seed == recipe["training"]["seed"]
    assert network.as_dict() == {**network.as_dict(), **(recipe.get("network") or {})}


def test_absent_keys_keep_the_configs_own_defaults():
    recipe = {"name": "x", "references": [{}], "genes": {}, "training": {}}
    genes, simulation, training, _ = recipe_configs(recipe)
    assert genes == GeneSelection(output_selection=None)
    assert simulation == SimulationConfig(options={})
    assert training == TrainConfig()


@pytest.mark.parametrize("section, key", [("genes", "n_markers_per_type"), ("training", "epoch")])
def test_an_unknown_key_is_refused_with_the_valid_ones(section, key):
    recipe = {"name": "x", "references": [{}], section: {key: 1}}
    with pytest.raises(BlueInputError, match=rf"unknown.*{key}.*valid"):
        recipe_configs(recipe)
