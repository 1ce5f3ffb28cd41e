"""Issue 13.8: an analysis survives a reload -- 'Download this analysis' and reopening it."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from blue_core.io.bundle import read_bundle, write_bundle
from blue_core.exceptions import BlueInputError
from blue_core.engine.inference import deconvolve
from blue_core.analysis.survival import SurvivalAnalysis


def test_bundle_round_trip_with_subtypes_and_survival(tiny_trained):
    model, bulk = tiny_trained()
    result = deconvolve(bulk, model)
    samples = list(result.proportions.index)
    labels = pd.Series(["S1", "S2"] * (len(samples) // 2), index=samples, name="subtype")
    clinical = pd.DataFrame({"os_days": np.arange(len(samples)) * 30.0 + 10, "os_event": [1, 0] * (len(samples) // 2)},
                            index=samples)
    survival = SurvivalAnalysis("os_days", "os_event").fit(labels, clinical)
    data = write_bundle(result, model=model, inputs={"bulk": "cohort.csv", "clinical": None},
                        subtypes=labels, survival=survival)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "blue_analysis/deconvolution/expression.h5ad" in names and "blue_analysis/kaplan_meier.png" in names
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("blue_analysis/manifest.json"))
    assert manifest["inputs"]["bulk"] == "cohort.csv" and manifest["model"]["name"] == "tiny"
    opened = read_bundle(data)
    assert np.allclose(opened.result.proportions.to_numpy(), result.proportions.to_numpy())
    assert np.allclose(opened.result.expression, result.expression)
    assert opened.subtypes.to_dict() == labels.to_dict() and opened.manifest["n_samples"] == len(samples)


def test_bundle_refuses_what_it_did_not_write(tiny_trained):
    model, bulk = tiny_trained()
    good = write_bundle(deconvolve(bulk, model), model=model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buffer, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("blue_analysis/../../evil.py", "import os")
    with pytest.raises(BlueInputError, match="unexpected entry"):
        read_bundle(buffer.getvalue())
    with pytest.raises(BlueInputError, match="not a zip"):
        read_bundle(b"hello")
    partial = io.BytesIO()
    with zipfile.ZipFile(partial, "w") as dst:
        dst.writestr("blue_analysis/manifest.json", "{}")
    with pytest.raises(BlueInputError, match="lacks"):
        read_bundle(partial.getvalue())
