"""`blue subtypes` and `blue enrich` end to end on a tiny written Deconvolution directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blue_core.cli import main

result = pytest.importorskip("blue_core.engine.result", reason="blue_core.engine.result (Deconvolution) not available")


def _write_deconv(directory: Path, n: int = 40, seed: int = 0, prefix: str = "P") -> pd.DataFrame:
    """Two planted groups in the 'Mono' GEP; returns a matching clinical table (group 2 dies sooner)."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(30)]
    cts = ["Mono", "T"]
    truth = np.repeat([0, 1], n // 2)
    expr = rng.lognormal(3, 0.3, (n, 2, len(genes))).astype(np.float32)
    expr[truth == 1, 0, :8] *= 8
    samples = [f"{prefix}{i:02d}" for i in range(n)]
    props = pd.DataFrame(rng.dirichlet([2, 2], n), index=pd.Index(samples, name="sample"), columns=cts)
    fit = pd.DataFrame({"fit_r": 0.9, "poorly_explained": False}, index=props.index)
    result.Deconvolution(props, expr, cts, genes, fit, "tiny").write(directory)
    t = rng.exponential(np.where(truth == 1, 200.0, 2000.0))
    return pd.DataFrame({"sample": samples, "os_days": np.round(t, 1),
                         "os_event": np.where(rng.uniform(size=n) < 0.85, "Dead", "Alive")})


@pytest.mark.filterwarnings("ignore::blue_core.analysis.enrichment.FewGeneSetsWarning")
def test_subtypes_validate_and_enrich(tmp_path, capsys):
    d1, d2, out = tmp_path / "d1", tmp_path / "d2", tmp_path / "out"
    _write_deconv(d1).to_csv(tmp_path / "clin1.csv", index=False)
    _write_deconv(d2, seed=1, prefix="V").to_csv(tmp_path / "clin2.tsv", sep="\t", index=False)
    rc = main(["subtypes", str(d1), "--clinical", str(tmp_path / "clin1.csv"), "--out", str(out), "--k", "2",
               "--cell-types", "Mono", "--n-resamples", "5", "--validate", str(d2),
               "--validate-clinical", str(tmp_path / "clin2.tsv")])
    assert rc == 0
    sub = pd.read_csv(out / "subtypes.csv")
    assert list(sub.columns) == ["sample", "subtype"] and len(sub) == 40
    assert sorted(sub["subtype"].unique()) == ["S1", "S2"]
    surv = json.loads((out / "survival.json").read_text())
    assert surv["n_matched"] == 40 and 0 <= surv["logrank"]["p"] < 0.05
    assert {g["group"] for g in surv["groups"]} == {"S1", "S2"}
    assert surv["clustering"]["k"] == 2
    val = pd.read_csv(out / "validation_subtypes.csv")
    assert len(val) == 40 and val["sample"].str.startswith("V").all()
    vsurv = json.loads((out / "validation_survival.json").read_text())
    assert vsurv["n_matched"] == 40 and vsurv["classifier"]["n_features"] > 0
    assert vsurv["replicated"] == (vsurv["logrank"]["p"] < 0.05) and "replicate" in vsurv["verdict"]
    printed = capsys.readouterr().out
    assert "log-rank p" in printed and "replicate" in printed
    # the KM figures next to the tables: interactive HTML (plotly.js inline) and a PNG
    for name in ("kaplan_meier", "kaplan_meier_validation"):
        html = (out / f"{name}.html").read_text()
        assert "plotly" in html and "S1" in html and len(html) > 100_000
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    gmt = tmp_path / "sets.gmt"
    gmt.write_text("UP\tplanted\t" + "\t".join(f"G{i}" for i in range(8)) + "\n"
                   "OTHER\tnull\t" + "\t".join(f"G{i}" for i in range(10, 20)) + "\n")
    table_path = tmp_path / "enr.csv"
    rc = main(["enrich", str(d1), "--subtypes", str(out / "subtypes.csv"), "--group", "S1", "--cell-type", "Mono",
               "--out", str(table_path), "--gene-sets", str(gmt), "--permutations", "50", "--min-size", "5"])
    assert rc == 0
    table = pd.read_csv(table_path)
    assert set(table["term"]) == {"UP", "OTHER"}
    assert {"nes", "p", "fdr", "leading_genes", "n_genes"} <= set(table.columns)


def test_user_errors_exit_2(tmp_path, capsys):
    d1 = tmp_path / "d1"
    clin = _write_deconv(d1)
    clin.assign(sample=clin["sample"] + "_x").to_csv(tmp_path / "bad.csv", index=False)
    rc = main(["subtypes", str(d1), "--clinical", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o"),
               "--k", "2", "--n-resamples", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "No sample IDs match" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    rc = main(["subtypes", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "not a directory" in capsys.readouterr().err
    rc = main(["subtypes", str(d1), "--out", str(tmp_path / "o"), "--validate", str(d1)])
    assert rc == 2 and "--validate-clinical" in capsys.readouterr().err
    (tmp_path / "s.csv").write_text("id,group\nP00,S1\n")
    rc = main(["enrich", str(d1), "--subtypes", str(tmp_path / "s.csv"), "--group", "S1", "--cell-type", "Mono",
               "--out", str(tmp_path / "e.csv")])
    assert rc == 2 and "'sample' and 'subtype'" in capsys.readouterr().err


def _aml_model_for(bulk) -> str:
    """The ``aml`` model if installed, else the aml* model whose input genes the cohort covers best."""
    from blue_core.engine.model import load_model
    from blue_core.engine.store import list_models

    names = [str(n) for n in list_models()["name"] if str(n).lower().startswith("aml")]
    if "aml" in names:
        return "aml"
    genes = set(map(str, bulk.var_names))
    return max(names, key=lambda n: float(np.mean([g in genes for g in load_model(n).input_genes])))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_real_aml_cohorts_end_to_end(tmp_path):
    """TCGA-LAML -> TARGET-AML with the AML model(s): well-formed subtypes and survival outputs."""
    try:
        from blue_core.io.datasets import load_sample
        from blue_core.engine.inference import deconvolve
        from blue_core.engine.store import list_models
    except ImportError as err:  # pragma: no cover
        pytest.skip(f"engine modules not available: {err}")
    if not any(str(n).lower().startswith("aml") for n in list_models()["name"]):
        pytest.skip("no AML model installed (pretrained/aml*/model.json absent)")
    tcga, target = load_sample("tcga_laml"), load_sample("target_aml")
    m_d, m_v = _aml_model_for(tcga.bulk), _aml_model_for(target.bulk)
    for cohort, model, name in ((tcga, m_d, "tcga"), (target, m_v, "target")):
        deconvolve(cohort.bulk, model).write(tmp_path / name)
        clin = cohort.clinical if "sample" in cohort.clinical.columns else cohort.clinical.rename_axis("sample").reset_index()
        clin.to_csv(tmp_path / f"{name}_clinical.csv", index=False)
    out = tmp_path / "out"
    rc = main(["subtypes", str(tmp_path / "tcga"), "--clinical", str(tmp_path / "tcga_clinical.csv"),
               "--out", str(out), "--k", "3", "--n-resamples", "10", "--n-top-genes", "50",
               "--validate", str(tmp_path / "target"), "--validate-clinical", str(tmp_path / "target_clinical.csv")])
    assert rc == 0
    sub = pd.read_csv(out / "subtypes.csv")
    assert len(sub) == tcga.bulk.n_obs and set(sub["subtype"]) == {"S1", "S2", "S3"}
    surv = json.loads((out / "survival.json").read_text())
    assert 100 <= surv["n_matched"] <= tcga.bulk.n_obs and 0.0 <= surv["logrank"]["p"] <= 1.0
    assert sum(g["n"] for g in surv["groups"]) == surv["n_matched"]
    vsurv = json.loads((out / "validation_survival.json").read_text())
    assert vsurv["n_matched"] >= 100 and 0.0 <= vsurv["logrank"]["p"] <= 1.0
    val = pd.read_csv(out / "validation_subtypes.csv")
    assert len(val) == target.bulk.n_obs and set(val["subtype"]) <= {"S1", "S2", "S3"}
