"""SubtypeClustering on synthetic data: planted clusters, label order, predict, features from a deconvolution."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from blue_core.exceptions import BlueInputError
from blue_core.analysis.subtypes import SubtypeClustering, shared_genes, subtype_features


def _planted(n_per: int = 20, k: int = 3, p: int = 30, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(k), n_per)
    centers = rng.normal(0, 2, (k, p))
    x = centers[truth] + rng.normal(0, 1, (truth.size, p))
    frame = pd.DataFrame(x, index=[f"s{i}" for i in range(truth.size)], columns=[f"f{j}" for j in range(p)])
    return frame, truth


def _fake_deconv(n: int = 40, genes: list[str] | None = None, seed: int = 0) -> SimpleNamespace:
    """Duck-typed Deconvolution: 2 cell types, the 'Mono' GEP carries 2 planted groups in 10 genes."""
    rng = np.random.default_rng(seed)
    genes = genes or [f"G{i}" for i in range(50)]
    cts = ["Mono", "T"]
    truth = np.repeat([0, 1], n // 2)
    expr = rng.lognormal(3, 0.3, (n, 2, len(genes))).astype(np.float32)
    expr[truth == 1, 0, :10] *= 8
    props = pd.DataFrame(rng.dirichlet([2, 2], n), index=[f"p{i}" for i in range(n)], columns=cts)
    return SimpleNamespace(proportions=props, expression=expr, cell_types=cts, genes=genes, truth=truth)


def test_recovers_planted_clusters_and_chooses_k():
    frame, truth = _planted()
    calls = []
    sc = SubtypeClustering(n_resamples=15, k_range=(2, 5)).fit(frame, progress=lambda f, m: calls.append(f))
    assert len(calls) == 15 and calls[-1] == 1.0
    assert sc.k_ == 3
    assert adjusted_rand_score(truth, sc.labels_) > 0.9
    assert list(sc.summary.columns) == ["subtype", "n", "fraction", "stability"]
    assert sc.summary["n"].sum() == len(frame)
    assert (sc.stability_ > 0.9).all()
    assert sc.consensus_.shape == (60, 60)
    assert set(sc.k_scores_["k"]) == {2, 3, 4, 5}


def test_labels_ordered_by_size_and_deterministic():
    rng = np.random.default_rng(1)
    truth = np.repeat([0, 1], [10, 25])
    x = np.where(truth[:, None] == 0, 5.0, 0.0) + rng.normal(0, 1, (35, 8))
    frame = pd.DataFrame(x, index=[f"s{i}" for i in range(35)])
    a = SubtypeClustering(k=2, n_resamples=10).fit(frame)
    b = SubtypeClustering(k=2, n_resamples=10).fit(frame)
    assert a.summary["n"].tolist() == [25, 10]  # S1 is the largest
    assert (a.labels_.iloc[10:] == "S1").all()
    pd.testing.assert_series_equal(a.labels_, b.labels_)


def test_predict_assigns_shifted_scaled_copy():
    frame, _ = _planted(seed=2)
    sc = SubtypeClustering(k=3, n_resamples=10).fit(frame)
    other = frame * 3.0 + 7.0
    other.index = [f"o{i}" for i in range(len(other))]
    pred = sc.predict(other)
    assert (pred.to_numpy() == sc.labels_.to_numpy()).all()
    assert pred.attrs["n_features"] == frame.shape[1]


def test_predict_needs_shared_features():
    frame, _ = _planted()
    sc = SubtypeClustering(k=3, n_resamples=5).fit(frame)
    other = frame.rename(columns=lambda c: f"x{c}")
    with pytest.raises(BlueInputError, match="shared_genes"):
        sc.predict(other)


def test_gep_features_from_deconvolution_and_proportions():
    d = _fake_deconv()
    feats = subtype_features(d, features="gep", n_top_genes=12)
    assert feats.shape == (40, 24)
    assert all("|" in c for c in feats.columns)
    sc = SubtypeClustering(k=2, cell_types="Mono", n_top_genes=20, n_resamples=10).fit(d)
    assert adjusted_rand_score(d.truth, sc.labels_) > 0.9
    assert all(f.startswith("Mono|") for f in sc.features_)
    prop = subtype_features(d, features="proportions")
    np.testing.assert_allclose(prop.sum(axis=1), 0.0, atol=1e-9)  # CLR rows sum to 0
    # cross-cohort: other deconvolution with a gene subset
    d2 = _fake_deconv(genes=[f"G{i}" for i in range(50)], seed=3)
    d2.genes = d2.genes[:30]
    d2.expression = d2.expression[:, :, :30]
    common = shared_genes(d, d2)
    assert common == [f"G{i}" for i in range(30)]
    sc = SubtypeClustering(k=2, cell_types=["Mono"], genes=common, n_resamples=10).fit(d)
    pred = sc.predict(d2)
    assert adjusted_rand_score(d2.truth, pred) > 0.9


def test_bad_inputs():
    d = _fake_deconv()
    with pytest.raises(BlueInputError, match="Unknown cell type"):
        SubtypeClustering(cell_types=["Neutrophil"]).fit(d)
    with pytest.raises(BlueInputError, match="features must be"):
        SubtypeClustering(features="pathways")  # type: ignore[arg-type]
    with pytest.raises(BlueInputError, match="k must be"):
        SubtypeClustering(k=1)
    frame, _ = _planted()
    frame.iloc[0, 0] = np.nan
    with pytest.raises(BlueInputError, match="NaN"):
        SubtypeClustering(k=2, n_resamples=2).fit(frame)
    with pytest.raises(BlueInputError, match="not fitted"):
        SubtypeClustering().summary


def test_plots_return_figures():
    frame, _ = _planted(n_per=8)
    sc = SubtypeClustering(k=3, n_resamples=5).fit(frame)
    fig = sc.plot_heatmap(n_features=10)
    assert len(fig.data) == 2 and fig.data[1].z.shape == (10, 24)
    assert sc.plot_consensus().data[0].z.shape == (24, 24)


def test_validation_rules_are_one_and_say_the_result_plainly():
    """validation_genes / validate_subtypes: the rules the app and `blue subtypes --validate` share."""
    from blue_core.analysis.subtype_validation import CohortValidation, validation_genes

    a = SimpleNamespace(cell_types=["T", "B"], genes=["G1", "G2", "G3"])
    b = SimpleNamespace(cell_types=["T", "B"], genes=["G3", "G1"])
    assert validation_genes(a, b, features="gep") == ["G1", "G3"]
    assert validation_genes(a, b, features="proportion") is None
    with pytest.raises(BlueInputError, match="not in the validation"):
        validation_genes(a, SimpleNamespace(cell_types=["T"], genes=["G1"]), features="gep")
    with pytest.raises(BlueInputError, match="share no output genes"):
        validation_genes(a, SimpleNamespace(cell_types=["T", "B"], genes=["X"]), features="gep")
    labels = pd.Series(["S1", "S2"], index=["p1", "p2"])
    yes = CohortValidation("TARGET", labels, SimpleNamespace(logrank_p_=0.01), 10)
    no = CohortValidation("TARGET", labels, SimpleNamespace(logrank_p_=0.2), 10)
    assert yes.replicated and "replicates" in yes.verdict and "0.01" in yes.verdict
    assert not no.replicated and "does not replicate" in no.verdict
    assert not CohortValidation("X", labels, SimpleNamespace(logrank_p_=float("nan")), 1).replicated


def test_validation_needs_the_same_best_group_and_holm_across_cohorts():
    """Issue 15.4: a split replicates only with the discovery's best-prognosis subtype best again, and cohorts
    validated together share one Holm family."""
    from blue_core.analysis.subtype_validation import CohortValidation, validate_across
    from blue_core.analysis.survival import SurvivalAnalysis, best_prognosis_group

    rng = np.random.default_rng(0)
    n = 90
    labels = pd.Series(np.repeat(["S1", "S2", "S3"], n // 3), index=[f"p{i}" for i in range(n)])
    scale = labels.map({"S1": 3000.0, "S2": 600.0, "S3": 300.0}).to_numpy()
    clinical = pd.DataFrame({"os_days": rng.exponential(scale), "os_event": 1}, index=labels.index)
    sa = SurvivalAnalysis().fit(labels, clinical)
    assert best_prognosis_group(sa) == "S1" and sa.logrank_p_ < 1e-4
    same = CohortValidation("A", labels, sa, 10, discovery_best="S1")
    flipped = CohortValidation("B", labels, sa, 10, discovery_best="S3")
    assert same.replicated and "S1 has the best survival here too" in same.verdict
    assert not flipped.replicated and "best survival there is S1, not S3" in flipped.verdict
    null = SurvivalAnalysis().fit(labels, clinical.assign(os_days=rng.exponential(1000, n)))
    together = validate_across([same, CohortValidation("C", labels, null, 10, discovery_best="S1")])
    assert together[0].p_adjusted == pytest.approx(min(1.0, 2 * sa.logrank_p_))
    assert together[1].p_adjusted >= null.logrank_p_ and "Holm-adjusted" in together[1].verdict


def test_support_warnings_say_when_k_is_not_supported():
    rng = np.random.default_rng(0)
    samples = [f"s{i}" for i in range(40)]
    centers = np.where(np.arange(40)[:, None] < 20, 3.0, -3.0)
    data = pd.DataFrame(centers + rng.normal(0, 0.5, size=(40, 12)), index=samples,
                        columns=[f"T|G{j}" for j in range(12)])
    good = SubtypeClustering(2, features="proportions", n_resamples=20, seed=0).fit(data)
    assert good.support_warnings() == []
    forced = SubtypeClustering(6, features="proportions", n_resamples=20, seed=0).fit(data)
    said = " ".join(forced.support_warnings())
    assert "k=6" in said and ("outliers" in said or "PAC" in said or "Silhouette" in said)
    noise = pd.DataFrame(rng.normal(size=(40, 12)), index=samples, columns=data.columns)
    assert any("Silhouette" in w or "PAC" in w
               for w in SubtypeClustering(3, features="proportions", n_resamples=20, seed=0).fit(noise).support_warnings())
