"""Validate the pretrained tissue models on real bulk cohorts (issue 3).

Prints, per model, a table ``metric | BLUE | NNLS baseline`` and writes it to
``bench/results/validation.md`` (+ ``validation.json``, which ``--update-cards`` copies into each
model card). Every number comes from this run. The truth tables (flow cytometry, HbA1c,
CIBERSORTx estimates) are only read here, for scoring: no model setting was chosen with them.

    python bench/validate.py                 # all models
    python bench/validate.py --models pbmc   # one model
    python bench/validate.py --update-cards  # also store the numbers in pretrained/<name>/model.json

Baselines: NNLS (``blue_core.engine.baselines.nnls_proportions``) on the mean CPM profiles of the same
single-cell reference the model was trained on, over the model's input genes; for GEPs, the
reference mean profile of each cell type (what you get without deconvolving expression).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

import blue_core as bc
from blue_core.engine.baselines import nnls_proportions, signature_from_reference
from blue_core.engine.card import real_data_fields
from blue_core.analysis.metrics import ccc, pearson
from blue_core.engine.recipe_data import build_reference, data_root, read_recipe

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HOEK_MODEL, HOEK_TRUTH  # noqa: E402
from _tables import markdown_table  # noqa: E402

from blue_core.analysis.stats import collapse_columns as collapse  # noqa: E402

logger = logging.getLogger("validate")
RESULTS = REPO_ROOT / "bench" / "results"

# Model cell types -> ABIS sorted-cell signature columns (means of the listed columns).
PBMC_TO_ABIS = {"B": ["B.Naive", "B.Memory"], "CD4 T": ["T.CD4.Naive", "T.CD4.Memory"],
                "CD8 T": ["T.CD8.Naive", "T.CD8.Memory"], "NK": ["NK"], "Monocyte": ["Monocytes.C"],
                "mDC": ["mDCs"], "pDC": ["pDCs"], "Plasma cell": ["Plasmablasts"]}
# CIBERSORTx (Zeng 2022, 14 types) -> the AML model's 7 lineages; Erythroid has no CIBERSORTx column.
CIBERSORTX_TO_AML = {"LSPC-Quiescent": "HSC/Progenitor", "LSPC-Primed": "HSC/Progenitor",
                     "LSPC-Cycle": "HSC/Progenitor", "GMP-like": "GMP", "ProMono-like": "Monocytic",
                     "Mono-like": "Monocytic", "Monocyte": "Monocytic", "cDC-like": "DC", "cDC": "DC",
                     "T": "T/NK", "CTL": "T/NK", "NK": "T/NK", "B": "B", "Plasma": "B"}
BETA_FUNCTION_GENES = ["INS", "IAPP", "MAFA", "PDX1", "SLC2A2", "NKX6-1", "G6PC2", "PCSK1", "SLC30A8", "ABCC8"]


def proportion_rows(truth: pd.DataFrame, estimate: pd.DataFrame, prefix: str) -> list[tuple[str, float]]:
    """CCC over all pairs plus per-cell-type Pearson r, rows aligned by index."""
    samples = truth.index.intersection(estimate.index)
    types = [c for c in truth.columns if c in estimate.columns]
    t, e = truth.loc[samples, types], estimate.loc[samples, types]
    rows = [(f"{prefix} CCC (all sample x type pairs, n={t.size})", ccc(t, e))]
    rows += [(f"{prefix} r {c}", pearson(t[c], e[c])) for c in types]
    return rows


def nnls_on_reference(bulk: ad.AnnData, reference: ad.AnnData, genes: list[str]) -> pd.DataFrame:
    """NNLS proportions of a bulk on the reference's mean CPM profiles over ``genes``."""
    shared = [g for g in genes if g in set(bulk.var_names)]
    signature = signature_from_reference(reference, genes=shared)
    bulk_df = pd.DataFrame(np.asarray(bulk[:, shared].X), index=bulk.obs_names, columns=shared)
    return nnls_proportions(bulk_df, signature)


def quiet_deconvolve(bulk: ad.AnnData, model: bc.BlueModel) -> bc.Deconvolution:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bc.deconvolve(bulk, model)


# ----------------------------------------------------------------------------------------------- pbmc
def label_kang(root: Path, reference: ad.AnnData | list[ad.AnnData]) -> ad.AnnData:
    """Derived labels for the unlabelled Kang 2018 PBMCs (control + IFN-beta stimulated).

    Method (documented, reproducible): an L2 logistic regression (C=0.1) trained on the model's own
    training reference, or on several references pooled (log1p CP10k, genes shared by all of them and
    Kang) predicts each Kang cell's type; genes of
    the Hallmark interferon-alpha and -gamma response sets are excluded from the features so that the
    stimulation itself cannot move a cell between types. The labels are derived truth, not measured.
    """
    from blue_core.engine.labels import transfer_labels

    kang = ad.read_h5ad(root / "pbmc" / "kang_ifnb_harmony.h5ad")
    ifn: set[str] = set()
    for line in (root / "genesets" / "h.all.v7.0.symbols.gmt").read_text().splitlines():
        fields = line.split("\t")
        if fields[0].startswith("HALLMARK_INTERFERON"):
            ifn |= set(fields[2:])
    refs = reference if isinstance(reference, list) else [reference]
    kang.obs["cell_type"] = transfer_labels(kang, refs, exclude_genes=sorted(ifn))
    n_genes = len(set(kang.var_names).intersection(*(set(r.var_names) for r in refs)) - ifn)
    kang.uns["labelling"] = f"logistic regression on {n_genes} non-interferon genes"
    return kang


def pseudo_bulk_anndata(pb: bc.PseudoBulk, *, genes: list[str] | None = None, prefix: str = "s") -> ad.AnnData:
    """A simulated pseudo-bulk as the bulk AnnData ``deconvolve`` reads (samples ``<prefix>0..``; optional gene subset)."""
    frame = pd.DataFrame(pb.bulk, columns=pb.genes, index=[f"{prefix}{i}" for i in range(pb.n_samples)])
    return ad.AnnData((frame[genes] if genes is not None else frame).astype(np.float64))


def kang_pseudo_bulk(kang: ad.AnnData, model: bc.BlueModel, condition: str) -> tuple[ad.AnnData, pd.DataFrame]:
    """300 pseudo-bulks of 500 Kang cells of one condition (model cell types only) and their true fractions."""
    cells = kang[(kang.obs["condition"] == condition) & kang.obs["cell_type"].isin(model.cell_types)].copy()
    pb = bc.simulate(cells, 300, cells_per_sample=500, cell_types=model.cell_types, seed=11)
    bulk = pseudo_bulk_anndata(pb, prefix=condition)
    return bulk, pb.proportions.set_axis(bulk.obs_names)


def monaco_rows(model: bc.BlueModel, reference: ad.AnnData) -> tuple[list, Any, bc.Deconvolution, pd.DataFrame]:
    """Monaco PBMC vs flow on the 6 coarse types: rows (BLUE, NNLS), the cohort, BLUE's result, NNLS's
    proportions. The documented mapping of model types and flow columns lives in the cohort card (the app uses
    the same one): B, CD4 T, CD8 T, NK, Monocyte, DC (= mDC + pDC); truth renormalised."""
    cohort = bc.load_sample("monaco_pbmc")
    result = quiet_deconvolve(cohort.bulk, model)
    mapping = cohort.info["truth_mapping"]["pbmc"]
    truth = collapse(cohort.truth, mapping["truth"])
    base_all = nnls_on_reference(cohort.bulk, reference, model.input_genes)
    blue, base = collapse(result.proportions, mapping["model"]), collapse(base_all, mapping["model"])
    rows = [(name, b, n) for (name, b), (_, n) in zip(proportion_rows(truth, blue, "Monaco flow"),
                                                       proportion_rows(truth, base, "Monaco flow"))]
    return rows, cohort, result, base_all


def validate_pbmc(model: bc.BlueModel, recipe: dict) -> list[tuple[str, float, float]]:
    root = data_root(recipe)
    reference = build_reference(recipe)
    rows, cohort, result, _ = monaco_rows(model, reference)
    mapping = cohort.info["truth_mapping"]["pbmc"]
    truth = collapse(cohort.truth, mapping["truth"])

    # Hoek 2 donors (evaluation only; flow cytometry by EPIC's authors), 5 types.

    hoek = bc.read_bulk(root / "pbmc" / "hoek_GSE64655_bulk.csv.gz")
    hoek_truth = collapse(pd.read_csv(root / "pbmc" / "hoek_GSE64655_truth.csv", index_col=0), HOEK_TRUTH)
    hoek_blue = collapse(quiet_deconvolve(hoek, model).proportions, HOEK_MODEL)
    hoek_base = collapse(nnls_on_reference(hoek, reference, model.input_genes), HOEK_MODEL)
    htypes = [c for c in hoek_truth.columns if c in hoek_blue.columns]
    for label, est in (("blue", hoek_blue), ("nnls", hoek_base)):
        est = est.reindex(columns=htypes).fillna(0.0)
        diff = hoek_truth[htypes].to_numpy() - est.loc[hoek_truth.index].to_numpy()
        if label == "blue":
            rmse_b, ccc_b = float(np.sqrt(np.mean(diff ** 2))), ccc(hoek_truth[htypes], est.loc[hoek_truth.index])
        else:
            rmse_n, ccc_n = float(np.sqrt(np.mean(diff ** 2))), ccc(hoek_truth[htypes], est.loc[hoek_truth.index])
    rows.append(("Hoek flow RMSE (2 donors x 5 types)", rmse_b, rmse_n))
    rows.append(("Hoek flow CCC (2 donors x 5 types)", ccc_b, ccc_n))
    if getattr(result, "proportions_lo", None) is not None:
        one_to_one = {"B": "B", "CD4 T": "CD4 T", "CD8 T": "CD8 T", "NK": "NK", "Monocyte": "Monocyte"}
        mapped = [t for t in model.cell_types if t in mapping["model"]]
        scale = 1.0 / result.proportions[mapped].sum(axis=1)
        inside = []
        for m_type, t_type in one_to_one.items():
            lo = result.proportions_lo[m_type] * scale
            hi = result.proportions_hi[m_type] * scale
            t = truth[t_type].reindex(lo.index)
            inside.extend(((t >= lo) & (t <= hi)).dropna().tolist())
        rows.append(("Monaco 90% interval coverage (5 types; intervals rescaled to the flow panel)",
                     float(np.mean(inside)), float("nan")))

    # GEPs vs the ABIS sorted-cell signature (TPM), on each type's top reference markers.
    abis = pd.read_csv(root / "pbmc" / "abis_signature_S0_granulator.csv.gz", index_col=0)
    signature = signature_from_reference(reference)
    rs_blue, rs_ref = [], []
    for cell_type, columns in PBMC_TO_ABIS.items():
        if cell_type not in model.cell_types:
            continue
        genes = [g for g in model.output_genes if g in abis.index and g in signature.index]
        others = signature.drop(columns=cell_type).max(axis=1)
        score = np.log1p(signature.loc[genes, cell_type]) - np.log1p(others.loc[genes])
        top = score.sort_values(ascending=False).index[:50].tolist()
        sorted_cells = np.log1p(abis.loc[top, columns].mean(axis=1))
        predicted = np.log1p(result.gep(cell_type)[top].mean(axis=0))
        ref_mean = np.log1p(signature.loc[top, cell_type])
        r_blue, r_ref = pearson(sorted_cells, predicted), pearson(sorted_cells, ref_mean)
        rs_blue.append(r_blue)
        rs_ref.append(r_ref)
        rows.append((f"GEP vs sorted cells r {cell_type} (50 markers)", r_blue, r_ref))
    rows.append(("GEP vs sorted cells median r", float(np.median(rs_blue)), float(np.median(rs_ref))))

    # Interferon stimulation: control vs stimulated pseudo-bulk from derived Kang labels.
    kang = label_kang(root, reference)
    for condition in ("ctrl", "stim"):
        bulk, truth = kang_pseudo_bulk(kang, model, condition)
        est = quiet_deconvolve(bulk, model).proportions
        nn = nnls_on_reference(bulk, reference, model.input_genes)
        rows.append((f"Kang {condition} pseudo-bulk CCC (derived labels, {bulk.n_obs} samples)",
                     ccc(truth[model.cell_types], est[model.cell_types]),
                     ccc(truth[model.cell_types], nn.reindex(columns=model.cell_types, fill_value=0))))
    return rows


# ------------------------------------------------------------------------------------------- pancreas
def validate_pancreas(model: bc.BlueModel, recipe: dict) -> list[tuple[str, float, float]]:
    reference = build_reference(recipe)
    cohort = bc.load_sample("fadista_islets")
    clinical = cohort.clinical.set_index("sample") if "sample" in cohort.clinical else cohort.clinical
    result = quiet_deconvolve(cohort.bulk, model)
    base = nnls_on_reference(cohort.bulk, reference, model.input_genes)
    hba1c = pd.to_numeric(clinical["hba1c"], errors="coerce")
    ok = hba1c.dropna().index.intersection(result.proportions.index)
    rows: list[tuple[str, float, float]] = []

    def corr_rows(label: str, blue: pd.Series, baseline: pd.Series | None) -> None:
        rb, pb_ = stats.pearsonr(blue.loc[ok], hba1c.loc[ok])
        sb, sp_ = stats.spearmanr(blue.loc[ok], hba1c.loc[ok])
        if baseline is not None:
            rn, pn = stats.pearsonr(baseline.loc[ok], hba1c.loc[ok])
            sn, spn = stats.spearmanr(baseline.loc[ok], hba1c.loc[ok])
        else:
            rn = pn = sn = spn = float("nan")
        rows.extend([(f"{label} vs HbA1c Pearson r (n={len(ok)})", rb, rn), (f"{label} vs HbA1c Pearson p", pb_, pn),
                     (f"{label} vs HbA1c Spearman rho", sb, sn), (f"{label} vs HbA1c Spearman p", sp_, spn)])

    corr_rows("beta proportion", result.proportions["beta"], base["beta"])
    beta_gep = result.gep("beta")
    if "INS" in beta_gep.columns:
        corr_rows("beta GEP INS (log1p CPM)", np.log1p(beta_gep["INS"]), None)
    genes = [g for g in BETA_FUNCTION_GENES if g in beta_gep.columns]
    z = np.log1p(beta_gep[genes])
    score = ((z - z.mean()) / z.std(ddof=0)).mean(axis=1)
    corr_rows(f"beta GEP function score ({len(genes)} genes)", score, None)
    status = clinical.loc[ok, "hba1c_class2"].astype(str)
    for label, blue, baseline in (("beta proportion", result.proportions["beta"], base["beta"]),):
        t2d, normal = blue.loc[status[status == "T2D"].index], blue.loc[status[status == "Normal"].index]
        bt2d, bnormal = baseline.loc[t2d.index], baseline.loc[normal.index]
        rows.append((f"{label} mean Normal (n={len(normal)})", normal.mean(), bnormal.mean()))
        rows.append((f"{label} mean T2D (n={len(t2d)})", t2d.mean(), bt2d.mean()))
        rows.append((f"{label} T2D vs Normal Mann-Whitney p", stats.mannwhitneyu(t2d, normal).pvalue,
                     stats.mannwhitneyu(bt2d, bnormal).pvalue))
    return rows


# ------------------------------------------------------------------------------------------------ aml
def validate_aml(model: bc.BlueModel, recipe: dict, *, quick: bool = False) -> list[tuple[str, float, float]]:
    from blue_core.engine.reference_cells import split_reference
    from blue_core.engine.recipe_data import panel_genes

    root = data_root(recipe)
    reference = build_reference(recipe)
    rows: list[tuple[str, float, float]] = []

    # Leave-donor-out: retrain with the same recipe settings on ~80% of the donors, score pseudo-bulk
    # of the held-out donors, read through each cohort panel.
    train_ref, _, test_ref = split_reference(reference, fractions=(0.8, 0.0, 0.2), seed=7)
    panels = panel_genes(recipe)
    settings = dict(recipe.get("training", {}))
    if quick:
        settings.update(n_samples=2000, epochs=10)
    held_out = bc.train_model(train_ref, input_genes=model.input_genes, output_genes=model.output_genes,
                              input_panels=panels, simulation=recipe.get("simulation", {}), name="aml-ldo",
                              **settings)
    test_types = [t for t in model.cell_types if t in set(test_ref.obs["cell_type"].astype(str))]
    pb = bc.simulate(test_ref, 400, cells_per_sample=500, cell_types=model.cell_types, seed=13)
    signature_train = signature_from_reference(train_ref)
    for name, genes in panels.items():
        keep = [g for g in pb.genes if g in set(genes)]
        bulk = pseudo_bulk_anndata(pb, genes=keep)
        truth = pb.proportions.set_axis(bulk.obs_names)[test_types]
        est = quiet_deconvolve(bulk, held_out).proportions[test_types]
        shared = [g for g in held_out.input_genes if g in keep]
        nn = nnls_proportions(bulk.to_df()[shared], signature_train.loc[shared]).reindex(columns=test_types)
        n_donors = test_ref.obs["donor"].nunique()
        rows.append((f"leave-donor-out pseudo-bulk CCC, {name} genes ({n_donors} held-out donors)",
                     ccc(truth, est), ccc(truth, nn)))

    # Agreement with published CIBERSORTx estimates (not truth).
    signature = signature_from_reference(reference)
    for cohort_name, file, key in (("tcga_laml", "cibersortx_tcga_fractions.csv", "sample"),
                                   ("target_aml", "cibersortx_target_fractions.csv", "patient")):
        # Leucegene is not compared: its expression file fails integrity checks (bench/aml_subtypes.py, "Data checks")
        cohort = bc.load_sample(cohort_name)
        result = quiet_deconvolve(cohort.bulk, model)
        shared = [g for g in model.input_genes if g in set(cohort.bulk.var_names)]
        nn = nnls_proportions(cohort.bulk.to_df()[shared], signature.loc[shared])
        cx = pd.read_csv(root / "aml" / file)
        if key == "patient":  # TARGET: expression columns TARGET.20.<USI>.<09A|03A>...; CIBERSORTx by USI
            usi = pd.Series(result.proportions.index, index=result.proportions.index).str.split(".").str[2]
            cx = cx.assign(usi=cx[key].str.split("-").str[2]).drop_duplicates("usi").set_index("usi")
            index_map = usi
        else:
            cx = cx.set_index(key)
            index_map = pd.Series(result.proportions.index, index=result.proportions.index)
        cx = collapse(cx.drop(columns=[c for c in cx.columns if c in ("sample", "patient", "usi")]), CIBERSORTX_TO_AML)
        aligned = cx.reindex(index_map.to_numpy()).set_axis(index_map.index)
        aligned = aligned.dropna(how="all")
        types = [t for t in cx.columns if t in model.cell_types]
        blue = collapse(result.proportions, {t: t for t in types})
        base = collapse(nn, {t: t for t in types})
        for (name, b), (_, n) in zip(proportion_rows(aligned[types], blue, f"{cohort_name} vs CIBERSORTx"),
                                     proportion_rows(aligned[types], base, f"{cohort_name} vs CIBERSORTx")):
            rows.append((name.replace("pairs, n", f"pairs, {len(aligned)} samples, n"), b, n))
    return rows


# ---------------------------------------------------------------------------------------------- blood
GRANULOCYTES = ["Neutrophil", "Eosinophil", "Basophil"]


def validate_blood(model: bc.BlueModel, recipe: dict) -> list[tuple[str, float, float]]:
    """Issue 16: the whole-blood model on what we hold. Monaco PBMC (flow: 6 PBMC types; low-density granulocytes
    about 4 %), HPA's total-PBMC profile (granulocytes near 0), and pseudo-bulk from the held-out cells of the
    training split (single cells never trained on; granulocyte cells synthetic, from the same profiles)."""
    from blue_core.engine.simulation import simulate
    from blue_core.engine.reference_cells import split_reference

    root = data_root(recipe)
    reference = build_reference(recipe)
    rows, cohort, result, base_all = monaco_rows(model, reference)
    measured = cohort.truth["Granulocyte_LD"]
    predicted = result.proportions[GRANULOCYTES].sum(axis=1)
    nnls_gran = base_all.reindex(columns=GRANULOCYTES, fill_value=0.0).sum(axis=1)
    rows.append((f"Monaco granulocyte share, mean over 12 donors (flow low-density granulocytes {measured.mean():.3f})",
                 float(predicted.mean()), float(nnls_gran.mean())))
    rows.append(("Monaco granulocyte share vs flow, Pearson r (12 donors)", pearson(measured, predicted.loc[measured.index]),
                 pearson(measured, nnls_gran.loc[measured.index])))

    hpa = pd.read_csv(root / "pbmc" / "hpa_blood_celltype_profiles_nx.csv.gz", index_col=0)
    total = hpa[["total_PBMC"]].T.rename(index={"total_PBMC": "HPA_total_PBMC"})
    bulk = ad.AnnData(total.astype(np.float64))
    est = quiet_deconvolve(bulk, model).proportions
    nn = nnls_on_reference(bulk, reference, model.input_genes)
    rows.append(("HPA total-PBMC profile, granulocyte share (expected near 0)", float(est[GRANULOCYTES].sum(axis=1).iloc[0]),
                 float(nn.reindex(columns=GRANULOCYTES, fill_value=0.0).sum(axis=1).iloc[0])))

    fraction = float(recipe.get("training", {}).get("validation_fraction", 0.1))
    split_seed = int((recipe.get("ensemble") or {}).get("split_seed", recipe.get("training", {}).get("seed", 0)))
    _, held_out, _ = split_reference(reference, fractions=(1.0 - fraction, fraction, 0.0), seed=split_seed)
    pb = simulate(held_out, 400, cells_per_sample=500, cell_types=model.cell_types, seed=13,
                  group_share=recipe.get("simulation", {}).get("group_share"))
    pseudo = pseudo_bulk_anndata(pb)
    truth_pb = pb.proportions.set_axis(pseudo.obs_names)
    est = quiet_deconvolve(pseudo, model).proportions
    nn = nnls_on_reference(pseudo, reference, model.input_genes).reindex(columns=model.cell_types, fill_value=0.0)
    rows.append((f"held-out pseudo-bulk CCC, all {len(model.cell_types)} types incl. granulocytes (400 samples, half "
                 "whole-blood-like)", ccc(truth_pb[model.cell_types], est[model.cell_types]),
                 ccc(truth_pb[model.cell_types], nn[model.cell_types])))
    g_true, g_est, g_nn = (f[GRANULOCYTES].sum(axis=1) for f in (truth_pb, est, nn))
    rows.append(("held-out pseudo-bulk granulocyte share, Pearson r", pearson(g_true, g_est), pearson(g_true, g_nn)))
    rows.append(("held-out pseudo-bulk granulocyte share, mean absolute error", float((g_true - g_est).abs().mean()),
                 float((g_true - g_nn).abs().mean())))
    for cell_type in GRANULOCYTES:
        rows.append((f"held-out pseudo-bulk r {cell_type}", pearson(truth_pb[cell_type], est[cell_type]),
                     pearson(truth_pb[cell_type], nn[cell_type])))
    return rows


VALIDATORS = {"pbmc": validate_pbmc, "pancreas": validate_pancreas, "aml": validate_aml, "blood": validate_blood}


def main(argv: list[str] | None = None) -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(VALIDATORS))
    parser.add_argument("--update-cards", action="store_true", help="store the numbers in each model card")
    parser.add_argument("--quick", action="store_true", help="smaller leave-donor-out retraining (AML)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the result tables (default bench/results)")
    args = parser.parse_args(argv)
    RESULTS = Path(args.out)
    RESULTS.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out_json = RESULTS / "validation.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    for name in args.models:
        recipe = read_recipe(REPO_ROOT / "pretrained" / name / "recipe.toml")
        model = bc.load_model(name)
        t0 = time.perf_counter()
        kwargs = {"quick": args.quick} if name == "aml" else {}
        rows = [(m, float(b), float(n)) for m, b, n in VALIDATORS[name](model, recipe, **kwargs)]
        results[name] = {"rows": [{"metric": m, "blue": b, "nnls_baseline": n} for m, b, n in rows],
                         "seconds": round(time.perf_counter() - t0, 1)}
        table = pd.DataFrame(rows, columns=["metric", "BLUE", "NNLS baseline"])
        print(f"\n## {name}\n")
        print(markdown_table(table, number_format="{:.3g}"))
        sys.stdout.flush()
        if args.update_cards:  # only save_model writes a card (strict JSON, checked, atomic)
            # the recipe holds the card's limitations text (written from these numbers)
            model.card.update(real_data_fields(results[name]["rows"], limitations=recipe.get("limitations"),
                                               command="python bench/validate.py --update-cards"))
            bc.save_model(model, REPO_ROOT / "pretrained" / name, overwrite=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1))
    lines = ["# Validation of the pretrained models on real cohorts", "",
             "Produced by `python bench/validate.py`; every number below comes from that run.", ""]
    for name, res in results.items():
        table = pd.DataFrame(res["rows"]).rename(columns={"blue": "BLUE", "nnls_baseline": "NNLS baseline"})
        lines += [f"## {name}", "", markdown_table(table, number_format="{:.3g}"), "", f"({res['seconds']} s)", ""]
    lines += loco_section()
    (RESULTS / "validation.md").write_text("\n".join(lines))
    return 0


def loco_section() -> list[str]:
    """Issue 22.1's must-show, read from ``bench/results/selection_loco.json`` (written by ``python bench/selection.py
    --loco --tissue pbmc|blood``): per held-out cohort, the candidate chosen on the other cohorts, its seed-mean CCC
    +- seed SD, and for ``blood`` on GSE127813 the neutrophil MAE."""
    from loco import _mean_table, choose

    path = RESULTS / "selection_loco.json"
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())
    out = []
    for tissue in ("pbmc", "blood"):
        mine = [r for r in rows if r.get("tissue") == tissue]
        if not mine:
            continue
        picks = choose(mine, sorted({r["cohort"] for r in mine}))
        means = _mean_table(mine).set_index(["candidate", "cohort"])
        for cohort, pick in picks.items():
            if pick["held_out_ccc"] is None:
                continue
            seeds = [r for r in mine if r["candidate"] == pick["chosen"] and r["cohort"] == cohort]
            mae = [r.get("mae Neutrophil") for r in seeds if r.get("mae Neutrophil") is not None]
            out.append({"model": tissue, "held-out cohort": cohort, "chosen on the others": pick["chosen"],
                        "held-out CCC (seed mean)": pick["held_out_ccc"],
                        "seed SD": float(means.loc[(pick["chosen"], cohort), "sd"]),
                        "neutrophil MAE": float(np.mean(mae)) if mae else float("nan")})
    if not out:
        return []
    return ["## Leave-one-cohort-out (issue 22.1)", "",
            "From `bench/results/selection_loco.json` (`python bench/selection.py --loco --tissue pbmc|blood`; the "
            "protocol and every candidate are in `bench/results/selection_loco.md`): for each held-out cohort the "
            "setting chosen on the other cohorts and its score there, over 3 seeds.", "",
            markdown_table(pd.DataFrame(out), number_format="{:.3f}"), ""]


if __name__ == "__main__":
    sys.exit(main())
