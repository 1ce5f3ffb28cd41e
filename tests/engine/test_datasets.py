"""Bundled sample cohorts (sample_data/): each loads with its real shape and joins its tables."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest

from blue_core.io import datasets
from blue_core.exceptions import BlueInputError, LogScaleInputWarning

EXPECTED = {  # name: (n_samples, units, recommended model, clinical columns that must exist)
    "monaco_pbmc": (12, "relative", "pbmc", []),
    "fadista_islets": (77, "counts", "pancreas", ["hba1c", "age", "bmi"]),
    "tcga_laml": (173, "relative", "aml", ["os_days", "os_event", "patient"]),
    "target_aml": (145, "log_converted", "aml", ["os_days", "os_event", "efs_days", "efs_event", "risk_group"]),
    "beataml": (409, "log_converted", "aml", ["os_days", "os_event", "eln2017_risk", "age_at_diagnosis"]),
}


def test_list_samples():
    table = datasets.list_samples()
    assert set(EXPECTED) <= set(table.index)
    for name, (n, _, model, clin) in EXPECTED.items():
        assert table.loc[name, "n_samples"] == n
        assert table.loc[name, "recommended_model"] == model
        assert bool(table.loc[name, "has_clinical"]) == bool(clin)
    assert bool(table.loc["monaco_pbmc", "has_truth"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_sample(name):
    n, units, model, clinical_cols = EXPECTED[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = datasets.load_sample(name)
    assert cohort.bulk.n_obs == n and cohort.bulk.n_vars >= 469  # BeatAML: a 469-gene panel
    assert cohort.bulk.uns["blue_input"]["units"] == units
    assert (units == "log_converted") == any(issubclass(w.category, LogScaleInputWarning) for w in caught)
    assert np.isfinite(cohort.bulk.X).all() and (cohort.bulk.X >= 0).all()
    assert cohort.recommended_model == model and cohort.title and cohort.info["citation"]
    if clinical_cols:
        assert list(cohort.clinical.index) == list(cohort.bulk.obs_names)
        assert set(clinical_cols) <= set(cohort.clinical.columns)
    else:
        assert cohort.clinical is None


def test_monaco_truth_tables():
    cohort = datasets.load_sample("monaco_pbmc")
    assert list(cohort.truth.index) == list(cohort.bulk.obs_names)
    np.testing.assert_allclose(cohort.truth.sum(axis=1), 1.0, atol=1e-6)
    assert cohort.tables["truth_fine"].shape == (12, 18)


def test_tcga_clinical_keys_are_aliquot_barcodes():
    cohort = datasets.load_sample("tcga_laml")
    assert cohort.clinical.index[0].startswith("TCGA-") and len(cohort.clinical.index[0]) > 12
    assert (cohort.clinical["patient"] == cohort.clinical.index.str[:12]).all()
    assert cohort.clinical["os_days"].notna().sum() == 161


def test_unknown_cohort_and_env_root(tmp_path, monkeypatch):
    with pytest.raises(BlueInputError, match="No sample cohort named 'nope'. Available: .*monaco_pbmc"):
        datasets.load_sample("nope")
    cohort_dir = tmp_path / "tiny"
    cohort_dir.mkdir()
    (cohort_dir / "bulk.csv.gz").write_bytes(gzip.compress(b"gene,A,B\nTP53,100,200\nGAPDH,300,400\nCD4,5,6\n"))
    (cohort_dir / "cohort.json").write_text(json.dumps({"name": "tiny", "tissue": "x", "recommended_model": "pbmc"}))
    (cohort_dir / "clinical.csv").write_text("sample,age\nB,40\nA,30\n")
    monkeypatch.setenv("BLUE_SAMPLE_DIR", str(tmp_path))
    assert list(datasets.list_samples().index) == ["tiny"]
    cohort = datasets.load_sample("tiny")
    assert list(cohort.clinical["age"]) == [30, 40]  # re-ordered to the bulk's samples
