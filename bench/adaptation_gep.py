"""What cohort adaptation does to the fractions the shipped GEPs are split by (issue 25, a diagnostic).

The shipped ``pbmc`` model adapts its proportion branch to every cohort of >= 8 samples (issue 21) and its GEPs
come from the closed-form estimator (issue 25), which splits each bulk by the fractions. So the fractions the GEPs
are made from are the *adapted* ones, and whatever adaptation does to them reaches the GEPs. This script measures,
with the model as shipped (``deconvolve(..., adapt=False)`` against ``adapt="auto"``, nothing else changed):

- **Kang held-out half** (the cells the shipped GEP branch did not see; simulation seeds 17, 18, 19, 300
  pseudo-bulks of 500 cells per condition, each condition its own run, as in ``bench/gep_candidates.py``): per
  type, the slope of the predicted on the true fraction (1 = unbiased, below 1 = shrunk toward the mean), Pearson
  r and mean bias; the CCC over all sample x type pairs; the closed form's leakage r (``analysis.leakage``: median
  over the type's 20 reference markers of r(log1p profile, fraction)) beside the truth's; and how far the GEPs
  move (median |log1p(adapted) - log1p(not adapted)| over samples, types and genes).
- **Real cohorts with measured composition** (Monaco, SDY67, GSE127813; the five groups of
  ``bench/loco.py``, renormalised): the same slope and r against flow, and the CCC the leave-one-cohort-out choice
  scored. Twelve samples each, so a per-type slope there is rough.

Not a candidate and not a selection: it explains a measured miss (the leakage must-show) and corrects what the
card and the adaptation record said (that adaptation leaves the GEPs unchanged, true only for ``network`` GEPs).

    python bench/adaptation_gep.py                 # ~2 min on 2 cores
    python bench/adaptation_gep.py --report-only   # rewrite the section from the json

Writes bench/results/adaptation_gep.json and the section "## Issue 25: cohort adaptation and the GEPs" of
bench/results/gep_shifts.md.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table, replace_section  # noqa: E402
from gep_candidates import KANG_SEEDS, _kang_held_out, _slope  # noqa: E402
from gep_shifts import _base, _kang_labels, pseudo_bulk_anndata  # noqa: E402
from loco import _five, cohorts, gain_fractions  # noqa: E402

import blue_core as bc  # noqa: E402
from blue_core.analysis.leakage import fraction_dependence, marker_sets  # noqa: E402
from blue_core.analysis.metrics import ccc  # noqa: E402
from blue_core.engine.gep_estimators import estimate_profiles, with_estimator  # noqa: E402
from blue_core.engine.recipe_data import data_root  # noqa: E402
from blue_core.io import read_bulk  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
HEADER = "## Issue 25: cohort adaptation and the GEPs"
MODES = {"not adapted": False, "adapted (shipped default)": "auto"}
#: ``bench/loco.py``'s candidate ``rna+adapt-gain`` (not adapted fractions times each type's cohort-mean gain).
GAIN = "gain (loco candidate rna+adapt-gain)"


def _run(bulk, model: bc.BlueModel) -> dict[str, bc.Deconvolution]:  # noqa: ANN001
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {mode: bc.deconvolve(bulk, model, adapt=adapt) for mode, adapt in MODES.items()}


def _fraction_rows(truth: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    """Per type slope, r and bias of ``pred`` on ``truth`` (same rows and columns), and their CCC."""
    rows = {"CCC": ccc(truth, pred)}
    for t in truth.columns:
        x, y = truth[t].to_numpy(np.float64), pred[t].to_numpy(np.float64)
        if x.std() == 0:
            continue
        rows[f"slope {t}"] = _slope(x, y)
        rows[f"r {t}"] = float(np.corrcoef(x, y)[0, 1])
        rows[f"bias {t}"] = float((y - x).mean())
    return rows


def _gep_move(runs: dict[str, bc.Deconvolution]) -> float:
    a, b = (np.log1p(r.expression) for r in runs.values())
    return float(np.median(np.abs(a - b)))


def _closed_form(pb: bc.PseudoBulk, model: bc.BlueModel, proportions: pd.DataFrame) -> np.ndarray:
    """The model's GEPs (its card's estimator) for these pseudo-bulks given ``proportions``."""
    bulk = pseudo_bulk_anndata(pb, prefix="x")
    network = with_estimator(model, "network")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gep = bc.deconvolve(bulk, network, adapt=False).expression
    present = np.isin(model.output_genes, bulk.var_names)
    values = np.zeros((pb.n_samples, len(model.output_genes)))
    values[:, present] = bulk.to_df()[[g for g in model.output_genes if g in set(bulk.var_names)]].to_numpy()
    return estimate_profiles(gep, model=model, bulk=values, present=present, proportions=proportions.to_numpy())


def kang(model: bc.BlueModel) -> dict[str, dict[str, list[float]]]:
    """``{mode: {row: [value per (seed, condition)]}}`` on the Kang held-out half."""
    cells_all = _kang_labels(data_root(_base("pbmc")))[_kang_held_out(model)].copy()
    genes = [g for g in model.output_genes if g in set(cells_all.var_names)]
    markers = marker_sets(model.reference_profiles.T.loc[:, genes], n=20)
    out: dict[str, dict[str, list[float]]] = {mode: {} for mode in (*MODES, GAIN, "truth")}
    jobs = [(seed, c) for seed in KANG_SEEDS for c in ("ctrl", "stim")]
    for seed, condition in tqdm(jobs, desc="Kang held-out, with and without adaptation"):
        cells = cells_all[(cells_all.obs["condition"] == condition)
                          & cells_all.obs["cell_type"].isin(model.cell_types)].copy()
        pb = bc.simulate(cells, 300, cells_per_sample=500, cell_types=model.cell_types, output_genes=genes, seed=seed)
        truth = pb.proportions.loc[:, model.cell_types]
        runs = _run(pseudo_bulk_anndata(pb, prefix=condition), model)
        leak_truth = fraction_dependence(pb.profiles, pb.proportions, genes=genes, markers=markers)["median_r"]
        for t, v in leak_truth.items():
            out["truth"].setdefault(f"{condition} leakage r {t}", []).append(float(v))
        fractions = {mode: r.proportions for mode, r in runs.items()}
        fractions[GAIN] = gain_fractions(*fractions.values())
        profiles = {mode: r.expression for mode, r in runs.items()}
        profiles[GAIN] = _closed_form(pb, model, fractions[GAIN])
        if (seed, condition) == jobs[0]:  # the re-made split is the shipped one: same fractions in, same GEPs out
            again = _closed_form(pb, model, fractions["not adapted"])
            out["truth"]["check: largest |re-made - shipped GEP| / max"] = [
                float(np.abs(again - profiles["not adapted"]).max() / profiles["not adapted"].max())]
        for mode, props in fractions.items():
            rows = _fraction_rows(truth, props.set_axis(truth.index))
            leak = fraction_dependence(profiles[mode], props, genes=list(model.output_genes),
                                       markers=markers)["median_r"]
            rows.update({f"{condition} leakage r {t}": float(v) for t, v in leak.items()})
            for key, value in rows.items():
                out[mode].setdefault(key if "leakage" in key else f"{condition} {key}", []).append(value)
        out["truth"].setdefault("median |log1p GEP change|", []).append(_gep_move(runs))
    return out


def real(model: bc.BlueModel) -> dict[str, dict[str, float]]:
    """``{cohort: {row: value}}``: slope, r and CCC against flow with and without adaptation (deterministic)."""
    out: dict[str, dict[str, float]] = {}
    for name, spec in cohorts("pbmc").items():
        if name == "Hoek":  # 2 samples: never adapted, nothing to compare
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bulk = read_bulk(spec["path"])
        runs = _run(bulk, model)
        truth = spec["truth"][spec["groups"]]
        rows: dict[str, float] = {"median |log1p GEP change|": _gep_move(runs)}
        for mode, result in runs.items():
            pred = _five(result.proportions, spec["model"], spec["groups"]).loc[truth.index, spec["groups"]]
            rows.update({f"{mode}: {k}": v for k, v in _fraction_rows(truth, pred).items()})
        out[name] = rows
    return out


def _cell(values: list[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    if np.isnan(v).all():
        return ""
    return f"{np.nanmean(v):.3g} ({np.nanmin(v):.3g} to {np.nanmax(v):.3g})"


def _within(k: dict) -> str:
    """How many (condition, type) pairs have a seed-mean leakage within 0.1 of the truth's, per mode."""
    keys = [key for key, v in k["truth"].items() if "leakage" in key and not np.isnan(v).all()]
    words = []
    for mode in (*MODES, GAIN):
        gaps = [abs(np.nanmean(k[mode][key]) - np.nanmean(k["truth"][key])) for key in keys]
        words.append(f"{mode} {sum(g <= 0.1 for g in gaps)} of {len(keys)} (worst gap {max(gaps):.2f})")
    return "Closed-form leakage within 0.1 of the truth's (seed means, pairs of condition and type): " + "; ".join(words) + "."


def report(data: dict) -> list[str]:
    """The markdown section (tables only; the reading is in the issue note and the README)."""
    k, types = data["kang"], data["types"]
    lines = [HEADER, "", "Produced by `python bench/adaptation_gep.py` (what it measures: its docstring). The shipped "
             "`pbmc` ensemble with its card's GEP estimator (`closed_form`), each cohort deconvolved with "
             "`adapt=False` and with the default `adapt=\"auto\"`; nothing else differs. A diagnostic, not a "
             "candidate.", "", "### Kang held-out half: the fractions, and the closed form's leakage",
             "", f"Seed mean (min to max) over simulation seeds {list(KANG_SEEDS)}; slope of predicted on true "
             "fraction (1 = unbiased), r, bias = mean(predicted - true); leakage r within 0.1 of the truth's is the "
             "must-show.", ""]
    table = []
    for condition in ("ctrl", "stim"):
        table.append({"row": f"{condition}: CCC, all sample x type pairs",
                      **{m: _cell(k[m][f"{condition} CCC"]) for m in (*MODES, GAIN)}, "truth": ""})
        for t in types:
            for what in ("slope", "r", "bias"):
                key = f"{condition} {what} {t}"
                if key in k[list(MODES)[0]]:
                    table.append({"row": f"{condition}: {what} {t}", **{m: _cell(k[m][key]) for m in (*MODES, GAIN)},
                                  "truth": ""})
            key = f"{condition} leakage r {t}"
            table.append({"row": f"{condition}: closed-form leakage r {t}",
                          **{m: _cell(k[m][key]) for m in (*MODES, GAIN)},
                          "truth": _cell(k["truth"][key])})
    lines += [markdown_table(pd.DataFrame(table), number_format=None), "", _within(k), "",
              f"The GEPs move with adaptation: median |log1p(adapted) - log1p(not adapted)| over samples, types and "
              f"genes {_cell(k['truth']['median |log1p GEP change|'])} (CPM scale).", "",
              "### Real cohorts: the fractions against flow (12 samples each; a per-type slope is rough)", ""]
    order = [c for c in ("Monaco", "SDY67", "GSE127813") if c in data["real"]]  # the json stores them sorted
    frame = pd.DataFrame({c: data["real"][c] for c in order + sorted(set(data["real"]) - set(order))}).T
    cols = ["median |log1p GEP change|"] + [f"{m}: {w}" for w in ["CCC"] + [f"{s} {t}" for t in data["groups"]
                                                                             for s in ("slope", "r")] for m in MODES]
    lines += [markdown_table(frame[[c for c in cols if c in frame.columns]].T.rename_axis("row").reset_index()), ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    store = RESULTS / "adaptation_gep.json"
    if "--report-only" in (argv if argv is not None else sys.argv[1:]):
        data = json.loads(store.read_text())
    else:
        model = bc.load_model("pbmc")
        data = {"kang": kang(model), "real": real(model), "types": list(model.cell_types),
                "groups": cohorts("pbmc")["Monaco"]["groups"]}
        RESULTS.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    replace_section(RESULTS / "gep_shifts.md", HEADER, report(data),
                    title="# Do GEPs follow each sample's biology? (issue 11)")
    print("\n".join(report(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
