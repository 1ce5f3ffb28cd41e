"""Do the predicted cell-type profiles (GEPs) follow each sample's biology? (issue 11)

One command scores every model folder given (the shipped models by default, or the "before" copies
kept under bench/_work/gep_shifts/) on:

a. **Held-out condition (Kang, blood).** The blood model never saw interferon-stimulated cells. Kang
   control and IFN-beta pseudo-bulks (300 each, 500 cells, derived labels -- the fixed transfer of
   bench/selection.py) are deconvolved; per cell type, over the 200 genes whose expression changes most
   between stimulated and control cells of that type (|log2 fold change| on the Kang cells, among the
   model's output genes expressed in that type), the predicted log2 fold change (mean predicted GEP
   stim vs ctrl) is correlated with the true one (mean true profile of the pseudo-bulks). Baselines:
   closed-form E[Z|X] (BayesPrism's expected expression given the predicted fractions and the
   training reference's mean profiles) and the reference mean (no change, r undefined -> 0).
b. **Leave-one-patient-out on van Galen (AML).** Rule fixed in advance: hold out the AML patient with the
   most cells (AML556); train the ``aml`` recipe on the other donors (``--lopo plain``: as shipped;
   ``--lopo states``: plus the GEP-branch state-varying simulation; ``--lopo donors``: the training
   patients as states, half the GEP-branch pseudo-bulks from one patient); simulate 200 pseudo-bulks of the
   held-out patient's cells and, per cell type with >= 20 cells, correlate the predicted and true
   deviations of the type's profile from the training reference's mean profile (log1p CPM, genes with
   >= 10 CPM in either). Baselines: the reference mean (deviation 0: r = 0) and E[Z|X].
c. **Real cohorts.** Monaco: GEPs vs the ABIS sorted-cell signature (median r over types on each
   type's 50 top reference markers) minus the same r of the reference mean profile. Fadista: the
   beta GEP's function score (z-scored log1p CPM of 9-10 beta genes) and INS vs HbA1c (Pearson r, p),
   and beta-GEP genes T2D vs normal (Mann-Whitney, Benjamini-Hochberg FDR).

    python bench/gep_shifts.py --label after               # shipped models
    python bench/gep_shifts.py --label before --blood DIR --islets DIR

Results accumulate in bench/results/gep_shifts.json (one entry per label) and gep_shifts.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table  # noqa: E402
from selection import _base, _kang_labels  # noqa: E402
from validate import BETA_FUNCTION_GENES, PBMC_TO_ABIS, pseudo_bulk_anndata  # noqa: E402

import blue_core as bc  # noqa: E402
from blue_core.engine.baselines import closed_form_gep, signature_from_reference  # noqa: E402
from blue_core.analysis.metrics import pearson  # noqa: E402
from blue_core.engine.recipe_data import build_reference, data_root, read_recipe  # noqa: E402
from blue_core.analysis.stats import benjamini_hochberg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _quiet(bulk: ad.AnnData, model: bc.BlueModel) -> bc.Deconvolution:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bc.deconvolve(bulk, model)


def _recipe(model: bc.BlueModel, tissue: str) -> dict:
    recipe = (model.card.get("provenance") or {}).get("recipe")
    if recipe:
        recipe = dict(recipe)
        recipe["_path"] = str(REPO / "pretrained" / tissue / "recipe.toml")
        return recipe
    return read_recipe(REPO / "pretrained" / tissue / "recipe.toml")


def leakage_rows(prefix: str, model: bc.BlueModel, pbs: list, results: list) -> dict[str, float]:
    """Issue 25's leakage measure on pseudo-bulk: per type, the median r over its reference markers between
    log1p(profile) and the fraction across samples -- the prediction against its own fractions, the truth against
    the true ones (``analysis.leakage.fraction_dependence``, the app's rule)."""
    from blue_core.analysis.leakage import fraction_dependence, marker_sets

    genes = list(pbs[0].output_genes)
    reference = model.reference_profiles.T.loc[:, [g for g in model.output_genes if g in set(genes)]]
    markers = marker_sets(reference, n=20)
    truth = fraction_dependence(np.concatenate([pb.profiles for pb in pbs]),
                                pd.concat([pb.proportions for pb in pbs], ignore_index=True), genes=genes, markers=markers)
    predicted = fraction_dependence(np.concatenate([r.expression for r in results]),
                                    pd.concat([r.proportions for r in results], ignore_index=True),
                                    genes=list(model.output_genes), markers=markers)
    out = {}
    for cell_type in truth.index:
        out[f"{prefix} leakage r {cell_type} (BLUE)"] = float(predicted.loc[cell_type, "median_r"])
        out[f"{prefix} leakage r {cell_type} (truth)"] = float(truth.loc[cell_type, "median_r"])
    return out


def kang_shift(model: bc.BlueModel, *, cells: np.ndarray | None = None, seed: int = 17, together: bool = False
               ) -> dict[str, float]:
    """Rows of (a); ``cells`` (boolean mask over the Kang cells) restricts the test to held-out cells; ``seed``
    the pseudo-bulks' simulation seed; ``together``: both conditions' pseudo-bulks deconvolved in one run (one
    cohort) instead of one run each."""
    root = data_root(_base("pbmc"))
    kang = _kang_labels(root)
    if cells is not None:
        kang = kang[cells].copy()
    reference = build_reference(_recipe(model, "pbmc"))
    signature = signature_from_reference(reference, genes=[g for g in model.output_genes if g in set(reference.var_names)])
    types = [t for t in model.cell_types if t in set(kang.obs["cell_type"].astype(str))]
    sets, blue, cf, bulks = {}, {}, {}, {}
    for condition in ("ctrl", "stim"):
        cells = kang[(kang.obs["condition"] == condition) & kang.obs["cell_type"].isin(types)].copy()
        pb = bc.simulate(cells, 300, cells_per_sample=500, cell_types=model.cell_types,
                         output_genes=[g for g in model.output_genes if g in set(kang.var_names)], seed=seed)
        bulk = pseudo_bulk_anndata(pb, prefix=condition)
        sets[condition], bulks[condition] = pb, bulk
        if not together:
            blue[condition] = _quiet(bulk, model)
    if together:  # one run of both, then each condition's rows
        both = _quiet(ad.concat([bulks["ctrl"], bulks["stim"]]), model)
        for condition, bulk in bulks.items():
            rows = np.isin(both.proportions.index, bulk.obs_names)
            blue[condition] = bc.Deconvolution(both.proportions.loc[rows], both.expression[rows], both.cell_types,
                                               both.genes, both.fit.loc[rows], both.model_name, both.input_report)
    for condition, bulk in bulks.items():
        shared = [g for g in signature.index if g in set(sets[condition].genes)]
        cf[condition] = closed_form_gep(bulk.to_df()[shared], blue[condition].proportions, signature=signature.loc[shared],
                                        normalize="cpm")
        cf[condition + "_genes"] = shared
    out: dict[str, float] = {}
    genes_out = sets["ctrl"].output_genes
    for cell_type in types:
        k = model.cell_types.index(cell_type)
        inside = kang.obs["cell_type"].astype(str) == cell_type

        def cell_mean(condition: str) -> pd.Series:
            part = kang[inside.to_numpy() & (kang.obs["condition"] == condition).to_numpy(), genes_out]
            x = np.asarray(part.X.todense() if hasattr(part.X, "todense") else part.X, dtype=np.float64)
            return pd.Series((x / x.sum(axis=1, keepdims=True) * 1e4).mean(axis=0), index=genes_out)

        c_mean, s_mean = cell_mean("ctrl"), cell_mean("stim")
        expressed = (c_mean + s_mean) / 2 > 0.5
        lfc_cells = np.log2(s_mean + 0.1) - np.log2(c_mean + 0.1)
        top = lfc_cells[expressed].abs().sort_values(ascending=False).index[:200].tolist()

        def true_mean(condition: str) -> pd.Series:
            pb = sets[condition]
            present = pb.proportions[cell_type].to_numpy() > 0.02
            return pd.Series(pb.profiles[present, k, :].mean(axis=0), index=genes_out)

        true_lfc = np.log2(true_mean("stim")[top] + 1) - np.log2(true_mean("ctrl")[top] + 1)
        blue_lfc = (np.log2(blue["stim"].gep(cell_type)[top].mean(axis=0) + 1)
                    - np.log2(blue["ctrl"].gep(cell_type)[top].mean(axis=0) + 1))
        out[f"kang r {cell_type} (BLUE)"] = pearson(true_lfc, blue_lfc)
        genes_cf = [g for g in top if g in set(cf["ctrl_genes"])]
        j = [cf["ctrl_genes"].index(g) for g in genes_cf]
        cf_lfc = (np.log2(cf["stim"][:, k, j].mean(axis=0) + 1) - np.log2(cf["ctrl"][:, k, j].mean(axis=0) + 1))
        out[f"kang r {cell_type} (E[Z|X])"] = pearson(true_lfc.loc[genes_cf], cf_lfc)
    out.update(leakage_rows("kang", model, [sets["ctrl"], sets["stim"]], [blue["ctrl"], blue["stim"]]))
    return out


def monaco_type_r(model: bc.BlueModel, *, result: bc.Deconvolution) -> pd.DataFrame:
    """Per cell type, r of ABIS sorted cells with ``result``'s mean GEP and with the reference mean over the type's 50
    most specific reference genes (log1p); index = cell type, columns ``BLUE`` and ``reference mean``."""
    root = data_root(_base("pbmc"))
    reference = build_reference(_recipe(model, "pbmc"))
    abis = pd.read_csv(root / "pbmc" / "abis_signature_S0_granulator.csv.gz", index_col=0)
    signature = signature_from_reference(reference)
    rows = {}
    for cell_type, columns in PBMC_TO_ABIS.items():
        if cell_type not in model.cell_types or cell_type not in signature.columns:
            continue
        genes = [g for g in model.output_genes if g in abis.index and g in signature.index]
        score = np.log1p(signature.loc[genes, cell_type]) - np.log1p(signature.drop(columns=cell_type).loc[genes].max(axis=1))
        top = score.sort_values(ascending=False).index[:50].tolist()
        sorted_cells = np.log1p(abis.loc[top, columns].mean(axis=1))
        rows[cell_type] = {"BLUE": pearson(sorted_cells, np.log1p(result.gep(cell_type)[top].mean(axis=0))),
                           "reference mean": pearson(sorted_cells, np.log1p(signature.loc[top, cell_type]))}
    return pd.DataFrame.from_dict(rows, orient="index")


def monaco_beyond_mean(model: bc.BlueModel, *, result: bc.Deconvolution | None = None) -> dict[str, float]:
    """Rows of (c); ``result``: ``model``'s deconvolution of ``monaco_pbmc`` when the caller has it."""
    if result is None:
        result = _quiet(bc.load_sample("monaco_pbmc").bulk, model)
    table = monaco_type_r(model, result=result)
    blue, ref = float(table["BLUE"].median()), float(table["reference mean"].median())
    return {"monaco GEP vs ABIS median r (BLUE)": blue, "monaco GEP vs ABIS median r (reference mean)": ref,
            "monaco BLUE minus reference mean": blue - ref}


def fadista_beta(model: bc.BlueModel, *, result: bc.Deconvolution | None = None) -> dict[str, float]:
    """Rows of (d); ``result``: ``model``'s deconvolution of ``fadista_islets`` when the caller has it."""
    cohort = bc.load_sample("fadista_islets")
    clinical = cohort.clinical.set_index("sample") if "sample" in cohort.clinical else cohort.clinical
    if result is None:
        result = _quiet(cohort.bulk, model)
    hba1c = pd.to_numeric(clinical["hba1c"], errors="coerce").dropna()
    ok = hba1c.index.intersection(result.proportions.index)
    beta = result.gep("beta").loc[ok]
    genes = [g for g in BETA_FUNCTION_GENES if g in beta.columns]
    z = np.log1p(beta[genes])
    score = ((z - z.mean()) / z.std(ddof=0)).mean(axis=1)
    r_s, p_s = stats.pearsonr(score, hba1c.loc[ok])
    out = {f"fadista beta function score ({len(genes)} genes) vs HbA1c r": float(r_s), "... p": float(p_s)}
    if "INS" in beta.columns:
        r_i, p_i = stats.pearsonr(np.log1p(beta["INS"]), hba1c.loc[ok])
        out.update({"fadista beta INS vs HbA1c r": float(r_i), "... INS p": float(p_i)})
    status = clinical.loc[ok, "hba1c_class2"].astype(str)
    t2d, normal = status[status == "T2D"].index, status[status == "Normal"].index
    ps = [stats.mannwhitneyu(np.log1p(beta.loc[t2d, g]), np.log1p(beta.loc[normal, g])).pvalue for g in genes]
    fdr = benjamini_hochberg(np.array(ps))
    lfc = [float(np.log2((beta.loc[t2d, g].mean() + 1) / (beta.loc[normal, g].mean() + 1))) for g in genes]
    out["fadista beta genes lower in T2D at FDR < 0.05"] = ", ".join(
        g for g, q, d in zip(genes, fdr, lfc) if q < 0.05 and d < 0) or "none"
    out["fadista beta genes higher in T2D at FDR < 0.05"] = ", ".join(
        g for g, q, d in zip(genes, fdr, lfc) if q < 0.05 and d > 0) or "none"
    return out


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


HELD_OUT_PATIENT = "AML556"
#: Issue 25 candidate 4's penalty weight (``[training] gep_decorrelation``), fixed before training, not tuned: the
#: penalty (a sum over types of mean squared r gaps, 0-4 each) is then on the scale of the GEP loss (~1.7 summed
#: over types in the shipped cards' training histories).
DECORRELATION_WEIGHT = 1.0


def lopo_model(mode: str, *, seed: int = 0) -> tuple[bc.BlueModel, ad.AnnData, ad.AnnData, dict]:
    """The ``aml`` recipe trained without the held-out patient (cached under bench/_work/gep_shifts), with the
    held-out patient's cells, the training patients' cells and the recipe."""
    import copy

    from blue_core.engine.recipe_data import build_references
    from blue_core.engine.recipes import train_recipe

    recipe = read_recipe(REPO / "pretrained" / "aml" / "recipe.toml")
    recipe["training"] = {**recipe.get("training", {}), "seed": seed}
    reference = next(iter(build_references(recipe).values()))
    donors = reference.obs["donor"].astype(str).str.split(":").str[-1]
    held = reference[(donors == HELD_OUT_PATIENT).to_numpy()].copy()
    rest = reference[(donors != HELD_OUT_PATIENT).to_numpy()].copy()
    folder = REPO / "bench" / "_work" / "gep_shifts" / (f"lopo_{mode}" if seed == 0 else f"lopo_{mode}_seed{seed}")
    if (folder / "model.json").is_file():
        return bc.load_model(folder), held, rest, recipe
    import blue_core.engine.recipes as recipes

    local = copy.deepcopy(recipe)
    if mode == "states":
        local["gep_simulation"] = {"n_states": 4, "state_alpha": 0.5}
    elif mode == "donors":  # issue 11.2: the patients themselves as states; half the pseudo-bulks from one patient
        local["gep_simulation"] = {"state_key": "donor", "state_alpha": 0.5, "single_state_fraction": 0.5}
    elif mode == "decorrelated":  # issue 25 candidate 4: the leakage penalty on the GEP branch
        local["training"] = {**local["training"], "gep_decorrelation": DECORRELATION_WEIGHT}
    original = recipes.build_references
    recipes.build_references = lambda _r: {"vangalen2019": rest}  # the same recipe, minus one patient
    try:
        model = train_recipe(local)
    finally:
        recipes.build_references = original
    bc.save_model(model, folder, overwrite=True)
    return model, held, rest, recipe


def vangalen_lopo(mode: str, *, seed: int = 0, estimator: str | None = None) -> dict[str, float]:
    """Rows of (b) for the model trained with ``seed`` (its held-out pseudo-bulks simulated with ``23 + seed``),
    its GEPs from ``estimator`` (default the model's own)."""
    from blue_core.engine.gep_estimators import with_estimator
    from blue_core.engine.reference_cells import split_reference
    from blue_core.engine.training_sets import reference_profiles

    model, held, rest, recipe = lopo_model(mode, seed=seed)
    if estimator is not None:
        model = with_estimator(model, estimator)
    tr = recipe.get("training", {})
    train_cells = split_reference(rest, fractions=(1 - tr.get("validation_fraction", 0.1), tr.get("validation_fraction", 0.1), 0.0),
                                  seed=tr.get("seed", 0))[0]
    ref_mean = pd.DataFrame(reference_profiles([train_cells], output_genes=model.output_genes, cell_types=model.cell_types)["values"],
                            index=model.output_genes)
    pb = bc.simulate(held, 200, cells_per_sample=500, cell_types=model.cell_types,
                     output_genes=[g for g in model.output_genes if g in set(held.var_names)], seed=23 + seed)
    bulk = pseudo_bulk_anndata(pb, prefix="p")
    res = _quiet(bulk, model)
    signature = signature_from_reference(train_cells, genes=[g for g in pb.output_genes if g in set(train_cells.var_names)])
    shared = list(signature.index)
    cf = closed_form_gep(bulk.to_df()[shared], res.proportions, signature=signature, normalize="cpm")
    out: dict[str, float] = {}
    counts = held.obs["cell_type"].astype(str).value_counts()
    for cell_type in model.cell_types:
        if counts.get(cell_type, 0) < 20 or cell_type not in ref_mean.columns:
            continue
        k = model.cell_types.index(cell_type)
        present = pb.proportions[cell_type].to_numpy() > 0.02
        true = pd.Series(pb.profiles[present, k, :].mean(axis=0), index=pb.output_genes)
        genes = [g for g in pb.output_genes if g in shared and (true[g] >= 10 or ref_mean.loc[g, cell_type] >= 10)]
        base = np.log1p(ref_mean.loc[genes, cell_type])
        d_true = np.log1p(true[genes]) - base
        d_blue = np.log1p(res.gep(cell_type).loc[present, genes].mean(axis=0)) - base
        j = [shared.index(g) for g in genes]
        d_cf = np.log1p(pd.Series(cf[present][:, k, :][:, j].mean(axis=0), index=genes)) - base
        out[f"van Galen LOPO ({HELD_OUT_PATIENT}) deviation r {cell_type} (BLUE)"] = pearson(d_true, d_blue)
        out[f"van Galen LOPO ({HELD_OUT_PATIENT}) deviation r {cell_type} (E[Z|X])"] = pearson(d_true, d_cf)
    out.update(leakage_rows(f"van Galen LOPO ({HELD_OUT_PATIENT})", model, [pb], [res]))
    return out


def main(argv: list[str] | None = None) -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="column name for these models (e.g. before, after)")
    parser.add_argument("--blood", default="pbmc", help="blood model name or folder (default: installed pbmc)")
    parser.add_argument("--islets", default="pancreas", help="islet model name or folder")
    parser.add_argument("--kang-held-out", action="store_true",
                        help="score (a) only on the Kang cells the blood model's [[gep_references]] subset left out "
                             "(for a model trained with half of the Kang cells)")
    parser.add_argument("--lopo", choices=["plain", "states", "donors"], help="only add the van Galen leave-one-patient-out "
                        "rows (b) to this label, training the aml recipe without the held-out patient")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the result tables (default bench/results)")
    args = parser.parse_args(argv)
    RESULTS = Path(args.out)
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "gep_shifts.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    if args.lopo:
        results.setdefault(args.label, {"rows": {}})
        results[args.label]["rows"].update(vangalen_lopo(args.lopo))
        results[args.label]["lopo"] = args.lopo
        store.write_text(json.dumps(results, indent=1, default=float) + "\n")
        return _write(results)
    blood, islets = bc.load_model(args.blood), bc.load_model(args.islets)
    cells = None
    if args.kang_held_out:
        from blue_core.engine.recipe_data import gep_reference_subset

        spec = next(g for g in (_recipe(blood, "pbmc").get("gep_references") or []) if "kang" in g["path"])
        cells = ~gep_reference_subset(spec, _kang_labels(data_root(_base("pbmc"))).obs)
    rows = {**kang_shift(blood, cells=cells), **monaco_beyond_mean(blood), **fadista_beta(islets)}
    results[args.label] = {"blood": str(blood.path), "islets": str(islets.path),
                           "blood_simulation": (blood.card.get("training") or {}).get("simulation"),
                           "islets_simulation": (islets.card.get("training") or {}).get("simulation"),
                           "blood_gep_simulation": (blood.card.get("training") or {}).get("gep_simulation"),
                           "islets_gep_simulation": (islets.card.get("training") or {}).get("gep_simulation"),
                           "kang_cells": "held-out half" if cells is not None else "all",
                           "rows": {**rows, **{k: v for k, v in results.get(args.label, {}).get("rows", {}).items()
                                            if k.startswith("van Galen")}}}
    store.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return _write(results)


def _describe(label: str, entry: dict) -> str:
    if "blood" not in entry:  # a label with van Galen rows only
        return f"**{label}**: van Galen leave-one-patient-out only (`--lopo {entry.get('lopo')}`)"
    return (f"**{label}**: blood `{_rel(entry['blood'])}` (simulation {entry['blood_simulation']}, GEP branch "
            f"{entry.get('blood_gep_simulation') or 'the same'}; Kang cells scored: {entry.get('kang_cells', 'all')}), islets `{_rel(entry['islets'])}` (simulation "
            f"{entry['islets_simulation']}, GEP branch {entry.get('islets_gep_simulation') or 'the same'})")


def _write(results: dict) -> int:
    labels = list(results)
    metrics = list(dict.fromkeys(k for lab in labels for k in results[lab]["rows"]))
    table = pd.DataFrame({lab: [results[lab]["rows"].get(m, "") for m in metrics] for lab in labels},
                         index=pd.Index(metrics, name="metric")).reset_index()
    lines = ["# Do GEPs follow each sample's biology? (issue 11)", "",
             "Produced by `python bench/gep_shifts.py --label <label> [--blood DIR --islets DIR]`, one column per "
             "label: " + "; ".join(_describe(lab, results[lab]) for lab in labels) + ".",
             "Goals: Kang r >= 0.8 monocytes, >= 0.6 T/NK/B; Monaco BLUE - reference mean >= +0.05; Fadista "
             "function score and INS vs HbA1c negative.", "",
             markdown_table(table, number_format="{:.3g}"), "",
             "b (van Galen leave-one-patient-out) rows come from `--lopo plain` / `--lopo states` / `--lopo donors` "
             f"(held-out patient {HELD_OUT_PATIENT}, fixed in advance: the AML patient with the most cells).", ""]
    (RESULTS / "gep_shifts.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
