"""Multi-panel models (panel dropout) and training recipes."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import blue_core as bc
from blue_core.exceptions import BlueInputError
from blue_core.engine.recipe_data import read_recipe
from tests._engine_data import synthetic_reference

FAST = dict(n_samples=200, n_validation_samples=60, epochs=1, batch_size=64,
            network=dict(hidden=16, n_layers=1, signal_length=16, base_channels=4, depth=2))


@pytest.fixture(scope="module")
def panel_model():
    ref = synthetic_reference(n_genes=120, n_types=3, seed=3)
    genes = list(map(str, ref.var_names))
    panels = {"even": genes[0::2], "odd": genes[1::2]}
    model = bc.train_model(ref, input_genes=genes, output_genes=genes[:40], input_panels=panels, seed=0, **FAST)
    return ref, model


def _bulk(ref: ad.AnnData, genes: list[str]) -> ad.AnnData:
    pb = bc.simulate(ref, 5, cells_per_sample=100, seed=1)
    frame = pd.DataFrame(pb.bulk, columns=pb.genes)[genes].astype(np.float64)
    frame.index = [f"s{i}" for i in range(len(frame))]
    return ad.AnnData(frame)


def test_card_records_panels(panel_model):
    _, model = panel_model
    assert set(model.card["input_panels"]) == {"even", "odd"}
    assert len(model.card["input_panels"]["even"]) == 60


def test_a_cohort_on_one_panel_is_served_by_the_matching_panel(panel_model):
    ref, model = panel_model
    odd = list(map(str, ref.var_names))[1::2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bc.deconvolve(_bulk(ref, odd), model)
    assert result.input_report["input_panel"] == "odd"
    assert result.input_report["n_model_genes_matched"] == 60
    assert np.allclose(result.proportions.sum(axis=1), 1.0, atol=1e-5)


def test_too_few_genes_of_any_panel_is_refused(panel_model):
    ref, model = panel_model
    few = list(map(str, ref.var_names))[1:30:2]  # 15 of the 60 odd-panel genes
    with pytest.raises(BlueInputError, match="model input genes matched"):
        bc.deconvolve(_bulk(ref, few), model)


def test_recipe_errors_name_the_fix(tmp_path):
    with pytest.raises(BlueInputError, match="does not exist"):
        read_recipe(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    with pytest.raises(BlueInputError, match="references"):
        read_recipe(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(BlueInputError, match="not valid TOML"):
        read_recipe(broken)


@pytest.mark.parametrize("name", ["pbmc", "pancreas", "aml", "blood"])
def test_shipped_recipes_parse(name):
    recipe = read_recipe(f"pretrained/{name}/recipe.toml")
    assert recipe["name"] == name and recipe["references"]


@pytest.mark.parametrize(
    "cohort, model",
    [("monaco_pbmc", "pbmc"), ("fadista_islets", "pancreas"), ("tcga_laml", "aml"), ("target_aml", "aml"),
     ("beataml", "aml")],
)
def test_cli_deconvolves_each_demo_cohort_with_its_pretrained_model(cohort, model, tmp_path):
    from blue_core.cli import main

    assert main(["deconvolve", f"sample_data/{cohort}", "--model", model, "--out", str(tmp_path)]) == 0
    proportions = pd.read_csv(tmp_path / "proportions.csv", index_col="sample")
    card = bc.load_model(model).card
    expected = card["cell_types"] if (card.get("n_members") or 1) == 1 else [
        c for t in card["cell_types"] for c in (t, f"{t}_lo", f"{t}_hi")]  # an ensemble adds its 90 % intervals
    assert list(proportions.columns) == expected
    assert np.allclose(proportions[card["cell_types"]].sum(axis=1), 1.0, atol=1e-4)
    assert (tmp_path / "fit.csv").is_file() and (tmp_path / "expression.h5ad").is_file()


def test_pretrained_models_are_small_and_listed():
    from pathlib import Path

    listed = bc.list_models()
    assert {"pbmc", "pancreas", "aml", "blood"} <= set(listed["name"])
    for name in ("pbmc", "pancreas", "aml", "blood"):
        assert Path(f"pretrained/{name}/model.safetensors").stat().st_size <= 25 * 2**20
        assert "rebuild_command" in bc.load_model(name).card["provenance"]


def test_blood_card_says_what_its_granulocytes_are():
    """Issue 16.1: the whole-blood model's card names the bulk-profile cell types, their licence and what
    that means for their GEPs."""
    card = bc.load_model("blood").card
    assert card["tissue"] == "whole blood"
    assert {"Neutrophil", "Eosinophil", "Basophil", "Monocyte", "CD4 T"} <= set(card["cell_types"])
    profiles = card["provenance"]["profile_references"]
    assert profiles and profiles[0]["licence"].startswith("CC BY-SA")
    assert set(profiles[0]["cell_types"]) == {"Neutrophil", "Eosinophil", "Basophil"}
    assert "CC BY-SA" in card["description"]
    assert "bulk averages" in card["limitations"] and "beyond noise" in card["limitations"]
    assert card["training"]["simulation"]["group_share"]["range"] == [0.4, 0.85]
    assert (card.get("n_members") or 1) >= 2  # an ensemble: intervals and the spread check
