"""Issue 16: cell types known only from bulk profiles (granulocytes), whole-blood-like proportions, and the
recipe section that merges them into a single-cell reference."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
from _engine_data import synthetic_reference

from blue_core.exceptions import BlueInputError
from blue_core.engine.reference_cells import profile_cells
from blue_core.engine.simulation import simulate


def _profiles(genes: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.gamma(2.0, 50.0, size=(len(genes), 2)), index=genes, columns=["Neutrophil", "Eosinophil"])
    frame.iloc[:10, 0] *= 40  # neutrophil-specific block
    frame.iloc[10:20, 1] *= 40
    frame.iloc[-5:] = 0.0  # genes the profiles do not express
    return frame


def test_profile_cells_shapes_depths_and_zeros():
    ref = synthetic_reference(n_genes=80)
    genes = list(map(str, ref.var_names))
    sizes = np.asarray(ref.X.sum(axis=1)).ravel()
    cells = profile_cells(_profiles(genes).drop(index=genes[30]), genes=genes, library_sizes=sizes, n_cells=50, seed=3)
    assert cells.shape == (100, 80) and list(cells.var_names) == genes
    assert cells.obs["cell_type"].value_counts().to_dict() == {"Neutrophil": 50, "Eosinophil": 50}
    assert cells.obs["synthetic"].all() and cells.obs["profile_donor"].str.match(r"^(Neutrophil|Eosinophil):\d$").all()
    depth = np.asarray(cells.X.sum(axis=1)).ravel()
    assert set(np.round(depth)) <= set(np.round(sizes))  # each cell's depth is a real cell's depth
    dense = cells.X.toarray()
    assert dense[:, -5:].sum() == 0 and dense[:, 30].sum() == 0  # unexpressed / unmeasured genes stay 0
    neut = dense[cells.obs["cell_type"].to_numpy() == "Neutrophil"]
    assert neut[:, :10].sum() > 5 * neut[:, 10:20].sum()  # its own profile
    again = profile_cells(_profiles(genes).drop(index=genes[30]), genes=genes, library_sizes=sizes, n_cells=50, seed=3)
    assert (again.X != cells.X).nnz == 0
    with pytest.raises(BlueInputError, match="non-negative"):
        profile_cells(-_profiles(genes), genes=genes, library_sizes=sizes)


def test_group_share_draws_whole_blood_and_pbmc_like_samples():
    ref = synthetic_reference(n_types=4)
    spec = {"cell_types": ["type0", "type1"], "fraction": 0.5, "range": [0.4, 0.85], "other_range": [0.0, 0.1]}
    pb = simulate(ref, 400, group_share=spec, seed=0, sparse_fraction=0.0, dominant_fraction=0.0,
                  cells_per_sample=2000)
    share = pb.proportions[["type0", "type1"]].sum(axis=1)
    whole = share > 0.25
    assert 0.4 < whole.mean() < 0.6
    assert share[whole].between(0.36, 0.89).all() and share[~whole].le(0.14).all()  # realised fractions
    assert np.allclose(pb.proportions.sum(axis=1), 1.0)
    plain = simulate(ref, 400, seed=0, sparse_fraction=0.0, dominant_fraction=0.0, cells_per_sample=2000)
    assert plain.proportions[["type0", "type1"]].sum(axis=1).between(0.1, 0.9).mean() > 0.5
    with pytest.raises(BlueInputError, match="group_share"):
        simulate(ref, 10, group_share={"cell_types": ["nope"], "range": [0.4, 0.8]})
    with pytest.raises(BlueInputError, match="group_share"):
        simulate(ref, 10, group_share={"cell_types": ["type0"], "range": [0.9, 0.4]})


def test_recipe_profile_references_merge_into_the_reference(tmp_path):
    from blue_core.engine.recipe_data import build_references

    ref = synthetic_reference(n_genes=60)
    ref.var_names = [f"G{i}" for i in range(60)]
    (tmp_path / "sc").mkdir()
    ref.write_h5ad(tmp_path / "sc" / "ref.h5ad")
    genes = [f"G{i}" for i in range(60)] + ["GRAN1", "GRAN2", "SHARED_LOW"]
    table = _profiles(genes).rename(columns={"Neutrophil": "neutrophil", "Eosinophil": "eosinophil"})
    table.loc[["GRAN1", "GRAN2"], "neutrophil"] = 500.0
    table["total_PBMC"] = 1.0
    table.loc["SHARED_LOW", ["neutrophil", "eosinophil", "total_PBMC"]] = [3.0, 3.0, 3.0]  # not specific
    (tmp_path / "profiles.csv.gz").write_bytes(gzip.compress(table.rename_axis("gene").to_csv().encode()))
    recipe = {"name": "t", "_path": str(tmp_path / "recipe.toml"), "data_root": str(tmp_path),
              "references": [{"name": "sc", "path": "sc/ref.h5ad", "cell_type_key": "cell_type"}],
              "profile_references": [{"name": "hpa", "path": "profiles.csv.gz", "n_cells": 20,
                                      "cell_types": {"Neutrophil": "neutrophil", "Eosinophil": "eosinophil"},
                                      "extra_genes_versus": "total_PBMC"}]}
    merged = build_references(recipe)["sc"]
    assert merged.n_obs == ref.n_obs + 40
    assert {"Neutrophil", "Eosinophil"} <= set(merged.obs["cell_type"].astype(str))
    assert "GRAN1" in merged.var_names and "SHARED_LOW" not in merged.var_names  # only profile-specific genes join
    single = merged[merged.obs["reference"] != "hpa"]
    assert single.X[:, list(merged.var_names).index("GRAN1")].sum() == 0  # not detected in the single cells
    recipe["profile_references"][0]["extra_genes_versus"] = "no_PBMC_column"
    with pytest.raises(BlueInputError, match="extra_genes_versus='no_PBMC_column' is not a column"):
        build_references(recipe)
    recipe["profile_references"][0]["cell_types"] = {"Neutrophil": "no_such_column"}
    with pytest.raises(BlueInputError, match="missing"):
        build_references(recipe)


def test_an_ensemble_recipe_builds_its_references_once_and_members_equal_lone_runs(tmp_path, monkeypatch):
    """Issue 23.4: the references are built once per ensemble (they were built once per member plus once), and a
    member trained on the shared references equals the same member trained alone (nothing mutates them)."""
    import copy

    import torch

    from blue_core.engine import recipes

    ref = synthetic_reference(n_cells=120, n_genes=60)
    ref.var_names = [f"G{i}" for i in range(60)]
    (tmp_path / "sc").mkdir()
    ref.write_h5ad(tmp_path / "sc" / "ref.h5ad")
    recipe = {"name": "t", "_path": str(tmp_path / "recipe.toml"), "data_root": str(tmp_path),
              "references": [{"name": "sc", "path": "sc/ref.h5ad", "cell_type_key": "cell_type"}],
              "genes": {"n_input_per_cell_type": 5, "max_output_genes": 40, "n_output_per_cell_type": 5,
                        "n_output_variable": 10},
              "training": {"n_samples": 48, "n_validation_samples": 16, "cells_per_sample": 20, "epochs": 1,
                           "proportion_epochs": 1, "batch_size": 16, "threads": 1},
              "network": {"hidden": 8, "signal_length": 8, "base_channels": 2, "depth": 2},
              "ensemble": {"seeds": [0, 1], "split_seed": 0}}
    calls = []
    real = recipes.build_references
    monkeypatch.setattr(recipes, "build_references", lambda r: calls.append(1) or real(r))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ensemble = recipes.train_ensemble_recipe(copy.deepcopy(recipe))
        assert len(calls) == 1
        alone = copy.deepcopy(recipe)
        alone["training"] = {**alone["training"], "seed": 1, "split_seed": 0}
        lone = recipes.train_recipe(alone)
    shared = ensemble.networks[1].state_dict()
    assert all(torch.equal(shared[k], v) for k, v in lone.network.state_dict().items())
