"""GEP estimators (issue 25): the closed form, the blend, what never changes, and the leakage measure.

Synthetic data only (unit tests): the real-data scores are in bench/results/gep_shifts.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blue_core as bc
from blue_core.analysis.enrichment import rank_genes
from blue_core.analysis.leakage import MIN_SAMPLES, fraction_dependence, marker_sets, result_dependence
from blue_core.analysis.tables import compare_gep_groups, gep_table, unmeasured_genes
from blue_core.engine.baselines import refit_profiles, refit_shares, split_bulk
from blue_core.engine.gep_estimators import (GEP_ESTIMATORS, estimate_profiles, model_estimator, mrna_shares,
                                             with_estimator)
from blue_core.exceptions import BlueInputError


def test_split_bulk_shares_each_gene_and_recovers_the_reference_under_the_model():
    rng = np.random.default_rng(0)
    phi = rng.gamma(1.0, 100.0, size=(3, 40))  # (K, G)
    shares = rng.dirichlet(np.ones(3), size=5)  # (n, K)
    bulk = shares @ phi  # exactly the model's mixture
    Z = split_bulk(bulk, shares, phi=phi)
    np.testing.assert_allclose(Z.sum(axis=1), bulk, rtol=1e-10)
    # under the model each type's part is its share of its reference profile
    np.testing.assert_allclose(Z, shares[:, :, None] * phi[None], rtol=1e-10)


def test_refit_shares_finds_the_mixture_and_keeps_absent_types_absent():
    rng = np.random.default_rng(3)
    phi = rng.gamma(0.5, 100.0, size=(4, 200))  # (K, G), profiles of different totals
    truth = rng.dirichlet(np.ones(4), size=6)  # shares of the counts
    q = phi / phi.sum(axis=1, keepdims=True)
    bulk = truth @ q * 1e6
    start = np.full((6, 4), 0.25)
    fitted = refit_shares(bulk, start, phi=phi, max_iter=3000, tol=1e-12)
    np.testing.assert_allclose(fitted, truth, atol=1e-4)
    np.testing.assert_allclose(refit_shares(bulk, start, phi=phi, max_iter=0), start)  # no step: the start
    start[:, 1] = 0.0
    assert (refit_shares(bulk, start, phi=phi)[:, 1] == 0).all()
    np.testing.assert_array_equal(refit_shares(np.zeros((1, 200)), start[:1], phi=phi), start[:1] / start[:1].sum())


def test_refit_follows_the_bulk_where_the_closed_form_follows_wrong_fractions(tiny_trained):
    model, _ = tiny_trained()
    ref = model.reference_profiles.loc[:, model.cell_types].to_numpy().T  # (K, G)
    q = ref / ref.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(4)
    truth = rng.dirichlet(np.ones(len(model.cell_types)), size=20)
    bulk = truth @ q * 1e6  # each type at its reference profile
    wrong = 0.5 * truth + 0.5 / len(model.cell_types)  # fractions shrunk halfway to the mean
    net = np.full((20, len(model.cell_types), len(model.output_genes)), 1e6 / len(model.output_genes), dtype=np.float32)
    present = np.ones(len(model.output_genes), bool)
    expected = q * 1e6
    errors = {}
    for name in ("closed_form", "refit"):
        out = estimate_profiles(net, model=with_estimator(model, name), bulk=bulk, present=present, proportions=wrong)
        errors[name] = float(np.abs(np.log1p(out) - np.log1p(expected)[None]).max())
    assert errors["refit"] < 0.05 < errors["closed_form"]


def test_refit_profiles_finds_the_cohort_profiles_given_the_shares():
    rng = np.random.default_rng(5)
    reference = rng.gamma(0.5, 100.0, size=(3, 150))
    cohort = reference * rng.lognormal(0.0, 0.5, size=reference.shape)  # the cohort's own state
    cohort[0, :10] = 0.0  # genes type 0 does not express
    q = cohort / cohort.sum(axis=1, keepdims=True)
    shares = rng.dirichlet(np.ones(3), size=60)
    fitted = refit_profiles(shares @ q * 1e6, shares, phi=np.where(cohort > 0, reference, 0.0), max_iter=3000, tol=1e-12)
    np.testing.assert_allclose(fitted, q, atol=1e-5)
    assert (fitted[0, :10] == 0).all()


def test_cohort_splits_by_the_cohorts_profiles_and_says_so(tiny_trained):
    model, _ = tiny_trained()
    ref = model.reference_profiles.loc[:, model.cell_types].to_numpy().T  # (K, G)
    rng = np.random.default_rng(6)
    state = ref * rng.lognormal(0.0, 0.4, size=ref.shape)
    q = state / state.sum(axis=1, keepdims=True)
    n = 40
    truth = rng.dirichlet(np.ones(len(model.cell_types)), size=n)
    bulk = truth @ q * 1e6
    net = np.full((n, len(model.cell_types), len(model.output_genes)), 1e6 / len(model.output_genes), dtype=np.float32)
    present = np.ones(len(model.output_genes), bool)
    errors = {}
    for name in ("refit", "cohort"):
        out = estimate_profiles(net, model=with_estimator(model, name), bulk=bulk, present=present, proportions=truth)
        errors[name] = float(np.median(np.abs(np.log1p(out) - np.log1p(q * 1e6)[None])))
    assert errors["cohort"] < 0.5 * errors["refit"]  # the shares are re-fit by the reference, so not exact
    bulk_frame = pd.DataFrame(bulk, columns=model.output_genes)
    for col in model.input_genes:
        if col not in bulk_frame:
            bulk_frame[col] = 0.0
    report = bc.deconvolve(bulk_frame, model, gep_estimator="cohort").input_report
    assert report["gep_estimator"] == "cohort" and "fitted on the 40 samples" in report["gep_cohort_profiles"]
    small = bc.deconvolve(bulk_frame.iloc[:5], model, gep_estimator="cohort").input_report
    assert "not fitted" in small["gep_cohort_profiles"] and "'refit'" in small["gep_cohort_profiles"]


def test_mrna_shares_weight_by_content():
    shares = mrna_shares(np.array([[0.5, 0.5]]), np.array([1.0, 3.0]))
    np.testing.assert_allclose(shares, [[0.25, 0.75]])
    np.testing.assert_allclose(mrna_shares(np.array([[0.2, 0.6]]), None), [[0.25, 0.75]])


def _with_profiles(model: bc.BlueModel) -> bc.BlueModel:
    assert model.reference_profiles is not None, "the tiny model's card should carry reference profiles"
    return model


def test_estimators_change_the_gep_only(tiny_trained):
    model, bulk = tiny_trained()
    model = _with_profiles(model)
    assert model_estimator(model) == "network"
    plain = bc.deconvolve(bulk, model)
    assert plain.input_report["gep_estimator"] == "network"
    for estimator in ("closed_form", "blend", "refit", "cohort", "joint"):
        other = bc.deconvolve(bulk, model, gep_estimator=estimator)
        assert other.input_report["gep_estimator"] == estimator
        pd.testing.assert_frame_equal(other.proportions, plain.proportions)
        pd.testing.assert_frame_equal(other.fit, plain.fit)  # the fit score is the network's own
        assert not np.allclose(other.expression, plain.expression)
        assert np.isfinite(other.expression).all() and (other.expression >= 0).all()
        assert bc.deconvolve(bulk, model, gep_estimator=estimator).expression.tobytes() == other.expression.tobytes()
    assert model_estimator(model) == "network"  # with_estimator did not touch the caller's model


def test_closed_form_keeps_the_network_on_unmeasured_genes(tiny_trained):
    model, bulk = tiny_trained()
    dropped = [g for g in model.output_genes if g not in set(model.input_genes)][:5]
    assert dropped
    partial = bulk.drop(columns=dropped)
    net = bc.deconvolve(partial, model)
    closed = bc.deconvolve(partial, model, gep_estimator="closed_form")
    assert unmeasured_genes(closed) == set(dropped)
    idx = [model.output_genes.index(g) for g in dropped]
    np.testing.assert_array_equal(closed.expression[:, :, idx], net.expression[:, :, idx])
    measured = [i for i in range(len(model.output_genes)) if i not in idx]
    # each profile's measured genes keep the network's total (CPM scale over the output genes)
    np.testing.assert_allclose(closed.expression[:, :, measured].sum(axis=2), net.expression[:, :, measured].sum(axis=2),
                               rtol=1e-4)


def test_estimate_profiles_closed_form_matches_the_split(tiny_trained):
    model, _ = tiny_trained()
    model = with_estimator(model, "closed_form")
    ref = model.reference_profiles.loc[:, model.cell_types].to_numpy().T  # (K, G)
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(len(model.cell_types)), size=4)
    bulk = p @ ref
    net = np.full((4, len(model.cell_types), len(model.output_genes)), 1e6 / len(model.output_genes), dtype=np.float32)
    out = estimate_profiles(net, model=model, bulk=bulk, present=np.ones(len(model.output_genes), bool), proportions=p)
    # the bulk is exactly the reference mixture, so each type's profile is its reference profile (rescaled)
    expected = ref / ref.sum(axis=1, keepdims=True) * 1e6
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-3)


def test_unknown_estimator_and_no_profiles_are_refused(tiny_trained):
    model, bulk = tiny_trained()
    with pytest.raises(BlueInputError, match="gep_estimator must be one of"):
        bc.deconvolve(bulk, model, gep_estimator="magic")
    bare = with_estimator(model, "network")
    bare.card = {k: v for k, v in model.card.items() if k != "reference_profiles"}
    with pytest.raises(BlueInputError, match="no reference profiles"):
        with_estimator(bare, "closed_form")
    assert set(GEP_ESTIMATORS) == {"network", "closed_form", "blend", "refit", "cohort", "joint"}


def test_fraction_dependence_tells_a_profile_that_follows_its_fraction():
    rng = np.random.default_rng(2)
    n, genes = 40, ["a", "b", "c", "d"]
    p = rng.dirichlet(np.ones(2), size=n)
    expr = rng.gamma(5.0, 20.0, size=(n, 2, 4))
    expr[:, 0, :2] = np.expm1(3.0 + 4.0 * p[:, [0]])  # type 0's markers follow its fraction exactly
    table = fraction_dependence(expr, pd.DataFrame(p, columns=["T0", "T1"]), genes=genes,
                                markers={"T0": ["a", "b"], "T1": ["c", "d", "zz"]}, min_fraction=0.0)
    assert table.loc["T0", "median_r"] == pytest.approx(1.0)
    assert table.loc["T0", "share_following"] == pytest.approx(1.0)
    assert abs(table.loc["T1", "median_r"]) < 0.5 and table.loc["T1", "n_genes"] == 2
    few = fraction_dependence(expr[: MIN_SAMPLES - 1], pd.DataFrame(p[: MIN_SAMPLES - 1], columns=["T0", "T1"]),
                              genes=genes, markers={"T0": ["a"]}, min_fraction=0.0)
    assert np.isnan(few.loc["T0", "share_following"])
    with pytest.raises(BlueInputError, match="expression must be"):
        fraction_dependence(expr[:, :, :3], pd.DataFrame(p, columns=["T0", "T1"]), genes=genes, markers={})


def test_result_dependence_counts_measured_markers_only(tiny_trained):
    model, bulk = tiny_trained(n_bulk=12)
    dropped = [g for g in model.output_genes if g not in set(model.input_genes)][:5]
    result = bc.deconvolve(bulk.drop(columns=dropped), model)
    reference = model.reference_profiles.T
    table = result_dependence(result, reference=reference, n_markers=50)
    assert list(table.index) == list(model.cell_types)
    full = marker_sets(reference.loc[:, [g for g in reference.columns if g not in dropped]], n=50)
    assert table["n_genes"].tolist() == [len(full[t]) for t in model.cell_types]
    assert table["words"].str.contains("fraction").all()


def test_inferred_genes_are_marked_and_not_tested_by_default(tiny_trained):
    model, bulk = tiny_trained(n_bulk=12)
    dropped = [g for g in model.output_genes if g not in set(model.input_genes)][:5]
    result = bc.deconvolve(bulk.drop(columns=dropped), model)
    groups = pd.Series(["a", "b"] * 6, index=result.proportions.index)
    cell_type = model.cell_types[0]
    table = compare_gep_groups(result, groups, cell_type=cell_type)
    assert not set(dropped) & set(table.index) and table["measured_in_input"].all()
    assert table.attrs["n_inferred_left_out"] == len(dropped)
    everything = compare_gep_groups(result, groups, cell_type=cell_type, include_inferred=True)
    assert set(dropped) <= set(everything.index)
    assert not everything.loc[dropped, "measured_in_input"].any()
    download = gep_table(result, cell_type=cell_type)
    assert download.columns[0] == "measured_in_input" and list(download.columns[1:]) == list(result.proportions.index)
    assert not download.loc[dropped, "measured_in_input"].any() and download["measured_in_input"].sum() == len(
        model.output_genes) - len(dropped)
    ranks = rank_genes(result, groups, group="a", cell_type=cell_type)
    assert not set(dropped) & set(ranks.index)
    assert set(dropped) & set(rank_genes(result, groups, group="a", cell_type=cell_type, include_inferred=True).index)
    adata = result.to_anndata()
    assert not adata.var.loc[dropped, "measured_in_input"].any() and adata.var["measured_in_input"].sum() == len(
        model.output_genes) - len(dropped)


def test_enrichment_on_inferred_genes_only_names_the_fix(tiny_trained):
    model, bulk = tiny_trained(n_bulk=12)
    dropped = [g for g in model.output_genes if g not in set(model.input_genes)][:5]
    result = bc.deconvolve(bulk.drop(columns=dropped), model)
    groups = pd.Series(["a", "b"] * 6, index=result.proportions.index)
    with pytest.raises(BlueInputError, match="include_inferred=True"):
        bc.enrich(result, groups, group="a", cell_type=model.cell_types[0], gene_sets={"inferred set": dropped},
                  method="ora", min_size=3)
    table = bc.enrich(result, groups, group="a", cell_type=model.cell_types[0], gene_sets={"inferred set": dropped},
                      method="ora", min_size=3, include_inferred=True)
    assert list(table["term"]) == ["inferred set"] and table.attrs["n_inferred_left_out"] == 0
