"""Tests of blue_core.analysis.stats.compare_groups on data with a known effect and a null."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blue_core.exceptions import BlueInputError
from blue_core.analysis.stats import benjamini_hochberg, compare_groups


def _frame(shift: float, n: int = 30, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    idx = [f"s{i}" for i in range(2 * n)]
    groups = pd.Series(["normal"] * n + ["T2D"] * n, index=idx)
    effect = rng.normal(0, 1, 2 * n) + np.r_[np.zeros(n), np.full(n, shift)]
    null = rng.normal(0, 1, 2 * n)
    return pd.DataFrame({"effect": effect, "null": null}, index=idx), groups


def test_two_groups_detects_effect_and_not_null() -> None:
    frame, groups = _frame(shift=2.0)
    table = compare_groups(frame, groups)
    assert list(table.index) == ["effect", "null"]  # sorted by p
    assert (table["test"] == "Mann-Whitney U").all()
    assert table.loc["effect", "p"] < 1e-6
    assert table.loc["null", "p"] > 0.05
    # groups are taken in sorted order ("T2D" < "normal"): difference = median(normal) - median(T2D)
    expected = frame.loc[groups == "normal", "effect"].median() - frame.loc[groups == "T2D", "effect"].median()
    assert table.loc["effect", "difference normal - T2D"] == pytest.approx(expected)
    assert expected < -1


def test_matches_scipy_and_bh() -> None:
    from scipy import stats

    frame, groups = _frame(shift=0.7, seed=3)
    table = compare_groups(frame, groups)
    a = frame.loc[groups == "T2D", "effect"]
    b = frame.loc[groups == "normal", "effect"]
    assert table.loc["effect", "p"] == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert np.allclose(benjamini_hochberg(p), [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert np.all(table["fdr"] >= table["p"])


def test_three_groups_uses_kruskal_and_aligns_samples() -> None:
    rng = np.random.default_rng(1)
    idx = [f"s{i}" for i in range(45)]
    groups = pd.Series(np.repeat(["1", "2", "3"], 15), index=idx)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 45) + np.repeat([0, 0, 3], 15)}, index=idx)
    # shuffled order, an extra unlabelled sample and a missing label must be handled
    frame.loc["extra"] = 0.0
    groups.iloc[0] = np.nan
    table = compare_groups(frame.sample(frac=1, random_state=0), groups)
    assert table.loc["x", "test"] == "Kruskal-Wallis H"
    assert table.loc["x", "n"] == 44
    assert table.loc["x", "p"] < 1e-4
    assert {"median 1", "median 2", "median 3"} <= set(table.columns)


def test_constant_feature_is_not_significant() -> None:
    frame, groups = _frame(shift=1.0)
    frame["flat"] = 5.0
    table = compare_groups(frame, groups)
    assert table.loc["flat", "p"] == 1.0


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["a"] * 6, "Only one group"),
        (["a"] * 5 + ["b"], "too small"),
        (None, "No sample ID is shared"),
    ],
)
def test_bad_groups_raise_clear_errors(labels: list[str] | None, match: str) -> None:
    frame = pd.DataFrame({"x": np.arange(6.0)}, index=[f"s{i}" for i in range(6)])
    groups = pd.Series(labels or ["a", "b"] * 3, index=frame.index if labels else [f"z{i}" for i in range(6)])
    with pytest.raises(BlueInputError, match=match):
        compare_groups(frame, groups)


def test_correlate_finds_monotone_relation() -> None:
    from blue_core.analysis.stats import correlate

    rng = np.random.default_rng(2)
    idx = [f"s{i}" for i in range(40)]
    hba1c = pd.Series(rng.uniform(4.5, 8, 40), index=idx)
    frame = pd.DataFrame({"beta": -hba1c + rng.normal(0, 0.3, 40), "noise": rng.normal(0, 1, 40)}, index=idx)
    table = correlate(frame, hba1c)
    assert table.index[0] == "beta"
    assert table.loc["beta", "r"] < -0.8 and table.loc["beta", "p"] < 1e-6
    assert table.loc["noise", "p"] > 0.01
    with pytest.raises(BlueInputError, match="at least 3"):
        correlate(frame.iloc[:2], hba1c)


def test_zscore_and_top_genes() -> None:
    from blue_core.analysis.stats import top_genes, zscore

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "flat": [4.0, 4.0, 4.0], "big": [0.0, 100.0, 1000.0]})
    z = zscore(frame)
    assert np.allclose(z["a"], [-1.2247449, 0, 1.2247449])
    assert (z["flat"] == 0).all()
    assert top_genes(frame, n=2) == ["big", "a"]
    assert top_genes(frame, n=1, by="mean") == ["big"]


def test_collapse_columns() -> None:
    from blue_core.analysis.stats import collapse_columns

    frame = pd.DataFrame({"mDC": [0.1, 0.2], "pDC": [0.1, 0.0], "B": [0.3, 0.3], "ILC": [0.5, 0.5]}, index=["a", "b"])
    out = collapse_columns(frame, {"mDC": "DC", "pDC": "DC", "B": "B"})
    assert list(out.columns) == ["DC", "B"]
    assert np.allclose(out.loc["a"], [0.4, 0.6]) and np.allclose(out.sum(axis=1), 1)
    raw = collapse_columns(frame, {"mDC": "DC", "pDC": "DC"}, renormalise=False)
    assert np.allclose(raw["DC"], [0.2, 0.2])
    with pytest.raises(BlueInputError, match="mapping"):
        collapse_columns(frame, {"X": "Y"})


def test_specific_genes() -> None:
    from blue_core.analysis.stats import specific_genes

    profiles = pd.DataFrame({"INS": [5000.0, 10, 20], "GCG": [10.0, 8000, 5], "ACTB": [900.0, 1000, 950],
                             "IAPP": [300.0, 1, 2]}, index=["beta", "alpha", "delta"])
    assert specific_genes(profiles, "beta", n=5) == ["INS", "IAPP"]
    assert specific_genes(profiles, "alpha", n=1) == ["GCG"]
    with pytest.raises(BlueInputError, match="not one of the cell types"):
        specific_genes(profiles, "acinar")


def test_significance_needs_an_effect_size():
    """A 0.5 % CPM difference can have a tiny p-value; it is not called significant without |log2 FC| >= 0.5."""
    from blue_core.analysis.stats import compare_groups

    rng = np.random.default_rng(0)
    n = 60
    groups = pd.Series(["a"] * n + ["b"] * n, index=[f"s{i}" for i in range(2 * n)])
    tiny = np.r_[rng.normal(1000, 1, n), rng.normal(1005, 1, n)]   # +0.5 %: p ~ 0, log2 FC 0.007
    large = np.r_[rng.normal(100, 10, n), rng.normal(300, 10, n)]  # 3-fold
    frame = pd.DataFrame({"tiny": tiny, "large": large}, index=groups.index)
    table = compare_groups(frame, groups, fold_change=True)
    assert table.loc["tiny", "fdr"] < 1e-6 and not table.loc["tiny", "significant"]
    assert table.loc["large", "significant"] and table.loc["large", "log2_fold_change"] == pytest.approx(np.log2(301 / 101), abs=0.05)
    loose = compare_groups(frame, groups, fold_change=True, min_abs_log2_fold_change=0.0)
    assert loose.loc["tiny", "significant"]
    assert "significant" not in compare_groups(frame, groups).columns  # proportions: no fold change


def test_censored_survival_is_never_correlated():
    """Issue 13: no correlation against censored survival times -- refused, and not offered as a covariate."""
    import numpy as np

    from blue_core.analysis.clinical import is_survival_column, numeric_columns
    from blue_core.analysis.stats import correlate

    rng = np.random.default_rng(0)
    samples = [f"s{i}" for i in range(30)]
    clinical = pd.DataFrame({"os_days": rng.uniform(10, 2000, 30), "hba1c": rng.uniform(4, 9, 30),
                             "OS_months": rng.uniform(1, 60, 30), "age": rng.integers(20, 80, 30)}, index=samples)
    assert numeric_columns(clinical) == ["hba1c", "age"]
    assert is_survival_column("efs_days") and is_survival_column("Vital_status") and not is_survival_column("hba1c")
    frame = pd.DataFrame({"B": rng.uniform(0, 1, 30)}, index=samples)
    with pytest.raises(BlueInputError, match="censored"):
        correlate(frame, clinical["os_days"])
    assert len(correlate(frame, clinical["hba1c"])) == 1


def test_holm_matches_the_step_down_rule_and_counts_declared_tests():
    from blue_core.analysis.stats import holm

    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    out = holm(p)
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 0.02, 0.03, 0.06, max(0.06, 0.04)
    assert np.allclose(out[[4, 0, 2, 1]], [0.02, 0.03, 0.06, 0.06]) and np.isnan(out[3])
    declared = holm(p, n_tests=9)  # two of nine declared tests could not be run: as strict as p = 1
    assert np.allclose(declared[[4, 0]], [0.045, 0.08])
    with pytest.raises(BlueInputError):
        holm(p, n_tests=2)
