"""Pseudo-bulk simulation and reference splitting (tiny synthetic references)."""

from __future__ import annotations

import numpy as np
import pytest
from _engine_data import synthetic_reference

from blue_core.exceptions import BlueInputError
from blue_core.engine.gene_selection import select_input_genes, select_output_genes
from blue_core.engine.simulation import simulate
from blue_core.engine.reference_cells import split_reference


def test_shapes_and_invariants():
    ref = synthetic_reference()
    out = list(ref.var_names[:50])
    pb = simulate(ref, 64, cells_per_sample=40, output_genes=out, seed=3)
    assert pb.bulk.shape == (64, ref.n_vars)
    assert pb.profiles.shape == (64, 3, 50)
    assert pb.proportions.shape == (64, 3)
    assert np.allclose(pb.proportions.sum(1), 1.0)
    assert (pb.proportions.to_numpy() >= 0).all()
    assert (pb.profiles >= 0).all()
    present = pb.proportions.to_numpy() > 0
    sums = pb.profiles.sum(2)
    assert np.allclose(sums[present], 1e6, rtol=1e-4)
    assert np.all(sums[~present] == 0)
    # bulk is the sum of exactly cells_per_sample cells: its total lies within the reference's range
    lib = np.asarray(ref.X.sum(1)).ravel()
    assert lib.min() * 40 <= pb.bulk.sum(1).min() and pb.bulk.sum(1).max() <= lib.max() * 40


def test_sparse_samples_have_zeros_and_dominant_samples_exist():
    pb = simulate(synthetic_reference(), 200, cells_per_sample=100, sparse_fraction=0.5, dominant_fraction=0.3)
    p = pb.proportions.to_numpy()
    assert (p == 0).any(axis=1).mean() > 0.4
    assert (p.max(1) > 0.5).mean() > 0.25


def test_deterministic_and_seed_dependent():
    ref = synthetic_reference()
    a = simulate(ref, 20, cells_per_sample=30, seed=1, gene_noise_sd=0.2, sample_noise_sd=0.1)
    b = simulate(ref, 20, cells_per_sample=30, seed=1, gene_noise_sd=0.2, sample_noise_sd=0.1)
    c = simulate(ref, 20, cells_per_sample=30, seed=2)
    assert np.array_equal(a.bulk, b.bulk) and np.array_equal(a.profiles, b.profiles)
    assert not np.array_equal(a.bulk, c.bulk)


def test_noise_changes_bulk_but_not_targets():
    ref = synthetic_reference()
    clean = simulate(ref, 30, cells_per_sample=30, seed=5)
    noisy = simulate(ref, 30, cells_per_sample=30, seed=5, gene_noise_sd=0.5, noise_batch_size=10)
    assert np.array_equal(clean.profiles, noisy.profiles)
    ratio = np.log(noisy.bulk + 1e-9) - np.log(clean.bulk + 1e-9)
    ok = clean.bulk > 0
    # the gene factor is shared within a batch of 10 samples
    assert np.allclose(ratio[0][ok[0] & ok[1]], ratio[1][ok[0] & ok[1]], atol=1e-4)
    assert 0.3 < ratio[ok].std() < 0.8


def test_missing_cell_type_gets_zero():
    ref = synthetic_reference()
    sub = ref[ref.obs["cell_type"] != "type2"].copy()
    pb = simulate(sub, 10, cells_per_sample=20, cell_types=["type0", "type1", "type2"])
    assert (pb.proportions["type2"] == 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 5, "cells_per_sample": 0}, "cells_per_sample"),
        ({"n_samples": 5, "dominant_fraction": 0.8, "sparse_fraction": 0.5}, "sum to at most 1"),
        ({"n_samples": 5, "output_genes": ["NOPE"]}, "output genes are not in the reference"),
        ({"n_samples": 5, "cell_types": ["type0"]}, "not in cell_types"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(BlueInputError, match=match):
        simulate(synthetic_reference(), **kwargs)


def test_reference_without_labels():
    ref = synthetic_reference()
    del ref.obs["cell_type"]
    with pytest.raises(BlueInputError, match="cell_type"):
        simulate(ref, 5)


def test_split_by_cell_is_disjoint_and_stratified():
    ref = synthetic_reference(n_cells=90)
    parts = split_reference(ref, fractions=(0.8, 0.1, 0.1), seed=0)
    names = [set(p.obs_names) for p in parts]
    assert sum(len(n) for n in names) == ref.n_obs
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    for part in parts:
        assert set(part.obs["cell_type"]) == {"type0", "type1", "type2"}


def test_split_by_donor():
    ref = synthetic_reference(donors=5)
    parts = split_reference(ref, fractions=(0.6, 0.2, 0.2), seed=1)
    donor_sets = [set(p.obs["donor"]) for p in parts]
    assert all(donor_sets)
    assert not (donor_sets[0] & donor_sets[1] or donor_sets[0] & donor_sets[2] or donor_sets[1] & donor_sets[2])


def test_split_with_empty_part():
    train, val, test = split_reference(synthetic_reference(), fractions=(0.9, 0.1, 0.0))
    assert test.n_obs == 0 and val.n_obs > 0


def test_gene_selection():
    ref = synthetic_reference()
    genes = select_input_genes(ref, n_per_cell_type=10)
    assert 10 <= len(genes) <= 30
    assert all(int(g[4:]) < 90 for g in genes)  # every type's markers come from its own block
    panel = list(ref.var_names[60:])
    assert set(select_input_genes(ref, n_per_cell_type=10, panel=panel)) <= set(panel)
    out = select_output_genes(ref, n_variable=20, max_genes=60, include=genes)
    assert set(genes) <= set(out) and len(out) <= 60
    with pytest.raises(BlueInputError, match="panel"):
        select_input_genes(ref, panel=["X1", "X2"])


def test_rna_content_sets_each_types_counts_per_cell():
    """simulate(rna_content=...): a type's counts per cell follow its content; fractions and profiles do not move."""
    from _engine_data import synthetic_reference

    from blue_core.engine.reference_cells import rna_content_factors
    from blue_core.engine.simulation import simulate

    ref = synthetic_reference(n_cells=300, n_genes=60, seed=2)
    types = sorted(ref.obs["cell_type"].astype(str).unique())
    content = {types[0]: 3.0, types[1]: 1.0, types[2]: 1.0}
    plain = simulate(ref, 40, cells_per_sample=50, seed=5)
    scaled = simulate(ref, 40, cells_per_sample=50, seed=5, rna_content=content)
    np.testing.assert_array_equal(plain.proportions.to_numpy(), scaled.proportions.to_numpy())
    np.testing.assert_allclose(plain.profiles, scaled.profiles)
    # a sample's total counts = sum over types of (cells of the type) x (counts per cell of the type):
    # the least-squares counts per cell are 3 : 1 : 1 with the content, the reference's own ratio without it
    def per_cell(pb):  # noqa: ANN001, ANN202
        cells = pb.proportions[types].to_numpy() * 50
        return np.linalg.lstsq(cells, pb.bulk.sum(axis=1), rcond=None)[0]

    with_content, without = per_cell(scaled), per_cell(plain)
    assert with_content[0] / with_content[1] == pytest.approx(3.0, rel=0.1)
    assert with_content[2] / with_content[1] == pytest.approx(1.0, rel=0.1)
    assert without[0] / without[1] == pytest.approx(1.0, rel=0.25)  # the synthetic types carry similar counts
    table = rna_content_factors(["Monocyte", "CD4 T naive", "Platelet"])
    assert table["values"] == {"Monocyte": 1.4196, "CD4 T naive": 0.3952, "Platelet": 0.4}
    assert table["measured"]["Platelet"].startswith("default")
    with pytest.raises(BlueInputError, match="positive value for every cell type"):
        simulate(ref, 4, cells_per_sample=10, rna_content={types[0]: 1.0})
