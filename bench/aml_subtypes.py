"""AML subtypes across four cohorts: the pre-registered protocol of ``bench/aml_protocol.md``, run once.

The protocol file was committed (cbb0670) before this script read any Leucegene or BeatAML survival. Every
choice below is the protocol's; where the code had to make a choice the protocol did not spell out, it is
listed under "Clarifications" in the output, and any departure under "Deviations" (with the original
analysis still reported).

1. Deconvolve the four AML sample cohorts (``sample_data/{tcga_laml,target_aml,leucegene_aml,beataml}``,
   the samples with overall survival) with the shipped ``aml`` model (panel dropout over the four panels).
2. Three feature sets: BLUE's GEPs (200 most variable genes per cell type in TCGA, all 7 cell types), BLUE's
   proportions, the published CIBERSORTx van Galen fractions (Zeng et al. 2022; relative fractions of 14 types).
3. Discovery TCGA-LAML: ``SubtypeClustering(k=None)`` (PAC over k = 2..6, 100 resamples, 80 %, seed 0).
   Validation cohorts: nearest centroid (``SubtypeClustering.predict``).
4. Per cohort: Kaplan-Meier figure, log-rank p, Cox HRs vs the discovery's best-prognosis subtype adjusted for
   age and the cohort's risk covariate. Holm over the 9 validation log-rank tests (3 features x 3 cohorts;
   a test that cannot be run counts as p = 1). Replicates = Holm p < 0.05 and the same best-prognosis group.
5. Enrichment of the discovery's best GEP subtype vs the rest (prerank, Monocytic and HSC/Progenitor GEPs,
   Hallmark + Reactome, 1,000 permutations, seed 0).

Run::

    nice -n 10 .venv/bin/python bench/aml_subtypes.py   # writes bench/results/aml_subtypes.md (+ figures)
    # the same protocol with the closed-form GEPs the models ship since issue 25 (a secondary run, not the registered one):
    nice -n 10 .venv/bin/python bench/aml_subtypes.py --gep-estimator closed_form --out bench/results/aml_subtypes_closed_form
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import blue_core as bc  # noqa: E402
from blue_core.analysis.enrichment import enrich, load_gene_sets  # noqa: E402
from blue_core.engine.gep_estimators import GEP_ESTIMATORS, with_estimator  # noqa: E402
from blue_core.plotting import save_km  # noqa: E402
from blue_core.analysis.stats import holm  # noqa: E402
from blue_core.analysis.subtypes import SubtypeClustering  # noqa: E402
from blue_core.analysis.survival import SurvivalAnalysis, best_prognosis_group  # noqa: E402
from _tables import markdown_table, results_folder  # noqa: E402

logger = logging.getLogger("bench.aml_subtypes")
DATA = REPO.parent / "shared" / "data" / "aml" / "vangalen_cibersortx_cohorts"

#: name, title, role, risk covariate, age column (bench/aml_protocol.md, "Cohorts")
COHORTS = [("tcga_laml", "TCGA-LAML", "discovery", "cytogenetic_risk", "age"),
           ("target_aml", "TARGET-AML", "validation", "risk_group", "age_years"),
           ("leucegene_aml", "Leucegene", "validation", "cytogenetic_risk", "age_at_diagnosis"),
           ("beataml", "BeatAML", "validation", "eln2017_risk", "age_at_diagnosis")]
PUBLISHED = {"tcga_laml": "tcga", "target_aml": "target", "leucegene_aml": "leucegene", "beataml": "beataml"}
FRACTION_TYPES = ["LSPC-Quiescent", "LSPC-Primed", "LSPC-Cycle", "GMP-like", "ProMono-like", "Mono-like",
                  "cDC-like", "B", "CTL", "NK", "Plasma", "T", "Monocyte", "cDC"]
FEATURES = ["gep", "proportions", "published fractions"]
MIN_MATCHED = 50
#: risk levels that say the risk is unknown: missing for the adjusted Cox (complete cases), not a level
UNKNOWN_RISK = {"unknown", "undetermined", "nan"}
PROTEASOME = re.compile(r"PROTEASOM|UBIQUITIN", re.I)
IMMUNE = re.compile(r"INTERFERON|INFLAMMATORY|IL6|TNFA|ALLOGRAFT|COMPLEMENT", re.I)
ENRICH_TYPES = ["Monocytic", "HSC/Progenitor"]


SEX_COLUMN = {"tcga_laml": "sex", "target_aml": "Gender", "leucegene_aml": "sex", "beataml": "sex"}
Y_GENES = ["RPS4Y1", "DDX3Y", "KDM5D", "UTY", "EIF1AY", "USP9Y", "ZFY"]
HOUSEKEEPING = ["ACTB", "GAPDH", "EEF1A1", "B2M", "TMSB4X", "FTL", "HBB"]
#: data check (added after the run, see "Deviations"): gene means must resemble the model's reference
MIN_REFERENCE_R = 0.3


def _load(name: str):
    """(bulk, clinical) of a cohort: the sample cohort when shipped, else the protocol's shared files."""
    from blue_core.analysis.clinical import read_clinical
    from blue_core.io import read_bulk

    if name == "leucegene_aml":  # not shipped (fails the data checks); the protocol names the shared files
        root = REPO.parent / "shared" / "data" / "aml"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bulk = read_bulk(root / "leucegene373_randomgenes_expression.csv.gz")
        clinical = read_clinical(root / "leucegene373_clinical.csv").reindex(bulk.obs_names)
        return bulk, clinical
    sample = bc.load_sample(name)
    return sample.bulk, sample.clinical


def _data_checks(name: str, bulk, clinical: pd.DataFrame, model) -> dict:
    """Label integrity of a cohort file: gene means vs the model's reference profile, housekeeping genes that
    are zero, Y-linked genes by recorded sex."""
    frame = bulk.to_df()
    cpm = frame.div(frame.sum(axis=1), axis=0) * 1e6
    ref = model.reference_profiles.mean(axis=1)
    genes = [g for g in ref.index if g in cpm.columns]
    r = float(np.corrcoef(np.log1p(cpm[genes].mean()), np.log1p(ref[genes]))[0, 1]) if len(genes) >= 10 else np.nan
    zero = [f"{g} {int((frame[g] == 0).sum())}/{len(frame)}" for g in HOUSEKEEPING if g in frame.columns]
    sex = clinical.get(SEX_COLUMN[name])
    ys = []
    if sex is not None:
        female = sex.astype(str).str.upper().str[0].eq("F").to_numpy()
        for g in (g for g in Y_GENES if g in frame.columns):
            ys.append(f"{g} {np.log1p(cpm[g][female]).mean():.2f} (F) vs {np.log1p(cpm[g][~female]).mean():.2f} (M)")
    return {"cohort": name, "output genes measured": len(genes), "r(gene means, reference)": round(r, 2),
            "housekeeping genes zero in samples": ", ".join(zero) or "none measured",
            "Y-linked genes, log1p CPM by sex": "; ".join(ys) or "none measured",
            "passes": bool(np.isfinite(r) and r >= MIN_REFERENCE_R)}


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _published(cohort: str, samples: pd.Index) -> tuple[pd.DataFrame, str]:
    """Relative CIBERSORTx fractions for ``samples``, matched on ``sample`` or ``mixture_id`` as given."""
    table = pd.read_csv(DATA / f"{PUBLISHED[cohort]}_vangalen_cibersortx_fractions.csv", dtype={"sample": str})
    best, key = pd.DataFrame(), "sample"
    for column in ("sample", "mixture_id"):
        ids = table[column].astype(str)
        matched = table[ids.isin(set(samples))].drop_duplicates(column).set_index(column)
        if len(matched) > len(best):
            best, key = matched, column
    if best.empty:
        return pd.DataFrame(columns=FRACTION_TYPES, dtype=float), key
    fractions = best[FRACTION_TYPES].astype(float)
    fractions = fractions.div(fractions.sum(axis=1).replace(0, np.nan), axis=0).dropna()
    fractions.index = fractions.index.astype(str)
    return fractions, key


def _survival(labels: pd.Series, clinical: pd.DataFrame, spec: tuple, *, reference: str | None) -> SurvivalAnalysis:
    _, _, _, risk, age = spec
    groups = set(labels.astype(str))
    return SurvivalAnalysis("os_days", "os_event", adjust_for=[age, risk],
                            reference=reference if reference in groups else None).fit(labels, clinical)


def _hr_text(sa: SurvivalAnalysis) -> str:
    table = sa.adjusted_hazard_ratios_ if sa.adjusted_hazard_ratios_ is not None else sa.hazard_ratios_
    parts = []
    for r in table.itertuples():
        if r.group == sa.reference_:
            parts.append(f"{r.group} 1 (ref)")
        elif np.isfinite(r.hr):
            parts.append(f"{r.group} {r.hr:.2f} ({r.hr_lower:.2f}-{r.hr_upper:.2f})")
        else:
            parts.append(f"{r.group} n/a")
    return "; ".join(parts)


def _sizes(labels: pd.Series) -> str:
    vc = labels.value_counts()
    return ", ".join(f"{g}:{vc[g]}" for g in sorted(vc.index, key=lambda s: int(str(s)[1:])))


def main(argv: list[str] | None = None) -> int:
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--gep-estimator", default="network", choices=list(GEP_ESTIMATORS))
    known, rest = pre.parse_known_args(argv if argv is not None else sys.argv[1:])
    out_dir = results_folder(rest, __doc__.splitlines()[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    figures = out_dir / "aml_subtypes_km"
    # The protocol was registered and run with the network's GEPs; since issue 25 the shipped default is the closed
    # form, so the estimator is pinned here (--gep-estimator closed_form --out FOLDER runs the same protocol with it).
    model = with_estimator(bc.load_model("aml"), known.gep_estimator)
    logger.info("GEP estimator: %s", known.gep_estimator)

    cohorts, deconv, inputs, checks = {}, {}, [], []
    for spec in COHORTS:
        name, title = spec[0], spec[1]
        full_bulk, clinical = _load(name)
        clinical = clinical.copy()
        risk = clinical[spec[3]].astype("object")
        clinical[spec[3]] = risk.where(~risk.astype(str).str.lower().isin(UNKNOWN_RISK), None)
        has_os = clinical["os_days"].notna() & clinical["os_event"].notna()
        bulk = full_bulk[has_os.reindex(full_bulk.obs_names).fillna(False).to_numpy()].copy()
        cohorts[name] = (spec, clinical.loc[bulk.obs_names])
        checks.append(_data_checks(name, full_bulk, clinical.reindex(full_bulk.obs_names), model))
        row = {"cohort": title, "role": spec[2], "samples (with OS)": f"{full_bulk.n_obs} ({bulk.n_obs})",
               "genes": bulk.n_vars, "risk covariate": f"`{spec[3]}`", "age": f"`{spec[4]}`"}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                deconv[name] = bc.deconvolve(bulk, model)
            rep = deconv[name].input_report
            row["model genes found"] = f"{rep['n_model_genes_matched']} / {rep['n_model_genes']} ({rep['input_panel']})"
            row["poorly explained"] = int(deconv[name].fit["poorly_explained"].sum())
        except bc.BlueInputError as err:
            row["model genes found"] = f"not readable: {err}"
        inputs.append(row)
    disc_name = COHORTS[0][0]
    disc_spec, disc_clin = cohorts[disc_name]

    rows, raw_p, keys, clusterings, notes = [], [], [], {}, []
    unmatched: dict[str, int] = {}
    bests: dict[str, str] = {}  # the discovery's best-prognosis subtype per feature set
    km_files: list[str] = []
    for features in FEATURES:
        # discovery data
        if features == "published fractions":
            data = {n: _published(n, pd.Index(cohorts[n][1].index)) for n in cohorts}
            disc_data, disc_key = data[disc_name]
            unmatched.update({n: len(f) for n, (f, _) in data.items() if len(f) < MIN_MATCHED})
            for n, (frame, key) in data.items():
                notes.append(f"published fractions, {n}: {len(frame)} of {len(cohorts[n][1])} samples matched "
                             f"on CIBERSORTx `{key}` as given")
            sc = SubtypeClustering(None, seed=0).fit(disc_data)
        else:
            data = {n: (d, "") for n, d in deconv.items()}
            sc = SubtypeClustering(None, features=features, seed=0).fit(deconv[disc_name])
        clusterings[features] = sc
        labels = sc.labels_
        sa0 = _survival(labels, disc_clin, disc_spec, reference=None)
        best = bests[features] = best_prognosis_group(sa0)
        sa = _survival(labels, disc_clin, disc_spec, reference=best)
        km_files += [str(p.relative_to(out_dir)) for p in save_km(sa, figures, name=f"{features.replace(' ', '_')}_{disc_name}",
                                                                  title=f"{features}: TCGA-LAML (discovery)",
                                                                  formats=("png",))]
        pac = float(sc.k_scores_.set_index("k").loc[sc.k_, "pac"])
        rows.append({"features": features, "cohort": "TCGA-LAML (discovery)", "k (PAC)": f"{sc.k_} ({pac:.2f})",
                     "n (events)": f"{sa.n_matched_} ({int(sa.data_['event'].sum())})", "subtypes": _sizes(labels),
                     "log-rank p": _fmt_p(sa.logrank_p_), "Holm p": "(discovery)",
                     "adjusted HR vs the discovery's best group, 95% CI": _hr_text(sa) + f" [n={sa.n_adjusted_}]",
                     "best group": best, "replicates": "(discovery)"})
        for spec in COHORTS[1:]:
            name, title = spec[0], spec[1]
            row = {"features": features, "cohort": title}
            frame = data.get(name, (None, ""))[0]
            reason = None
            if frame is None:
                reason = "not readable by the model"
            elif isinstance(frame, pd.DataFrame) and len(frame) < MIN_MATCHED:
                reason = f"{len(frame)} samples matched (< {MIN_MATCHED}): not tested"
            if reason is None:
                try:
                    pred = sc.predict(frame)
                    sv = _survival(pred, cohorts[name][1], spec, reference=best)
                except bc.BlueInputError as err:
                    reason = f"not tested: {err}"
            if reason is not None:
                row.update({"log-rank p": "n/a", "replicates": reason})
                raw_p.append(np.nan)
                keys.append((row, None, None))
                rows.append(row)
                continue
            own_best = best_prognosis_group(sv)
            km_files += [str(p.relative_to(out_dir)) for p in save_km(
                sv, figures, name=f"{features.replace(' ', '_')}_{name}", title=f"{features}: {title} (validation)",
                formats=("png",))]
            row.update({"k (PAC)": "", "n (events)": f"{sv.n_matched_} ({int(sv.data_['event'].sum())})",
                        "subtypes": _sizes(pred), "log-rank p": _fmt_p(sv.logrank_p_),
                        "adjusted HR vs the discovery's best group, 95% CI": _hr_text(sv) + f" [n={sv.n_adjusted_}]",
                        "best group": own_best})
            raw_p.append(sv.logrank_p_)
            keys.append((row, own_best, best))
            rows.append(row)
    passes = {c["cohort"]: c["passes"] for c in checks}
    title_to_name = {c[1]: c[0] for c in COHORTS}
    adjusted = holm(np.array(raw_p, dtype=float), n_tests=len(FEATURES) * (len(COHORTS) - 1))
    verdicts = {}
    for (row, own_best, best), p_adj in zip(keys, adjusted):
        features, name = row["features"], title_to_name[row["cohort"]]
        if own_best is None:
            row["Holm p"] = "1 (not run)"
            verdicts[(features, name)] = False
            continue
        ok = bool(p_adj < 0.05 and own_best == best)
        row["Holm p"] = _fmt_p(p_adj)
        if features != "published fractions" and not passes[name]:  # BLUE read the defective file itself
            verdicts[(features, name)] = False
            row["replicates"] = "invalid: the cohort file fails the data checks"
            continue
        verdicts[(features, name)] = ok
        row["replicates"] = ("**yes**" if ok else "no") + (
            "" if own_best == best else f" (best here {own_best}, not {best})") + (
            "" if p_adj < 0.05 else " (Holm p >= 0.05)")
    table = pd.DataFrame(rows).fillna("")

    # enrichment of the discovery's best GEP subtype
    sc, best = clusterings["gep"], bests["gep"]
    sets, _ = load_gene_sets(("hallmark", "reactome"))
    enr_rows, watched = [], []
    for ct in ENRICH_TYPES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = enrich(deconv[disc_name], sc.labels_, group=best, cell_type=ct, gene_sets=sets,
                         permutations=1000, seed=0, include_inferred=True)
        sig = res[res["fdr"] < 0.05]
        enr_rows.append({"cell type": ct, "group": f"{best} (n={res.attrs['n_group']})",
                         "sets tested (genes)": f"{res.attrs['n_sets_tested']} ({res.attrs['n_panel_genes']})",
                         "sets FDR < 0.05 up / down": f"{int((sig['nes'] > 0).sum())} / {int((sig['nes'] < 0).sum())}",
                         "significant sets (NES, FDR)": "; ".join(
                             f"{r.term} ({r.nes:.2f}, {_fmt_p(r.fdr)})" for r in sig.itertuples()) or
                         "nothing significant at FDR < 0.05"})
        for r in res[res["term"].str.contains(PROTEASOME) | res["term"].str.contains(IMMUNE)].itertuples():
            watched.append({"cell type": ct, "set": r.term, "kind": "proteasome/ubiquitin" if PROTEASOME.search(r.term)
                            else "immune", "NES": f"{r.nes:.2f}", "p": _fmt_p(r.p), "FDR": _fmt_p(r.fdr),
                            "genes in panel": r.n_genes})
    enr_table, watched_table = pd.DataFrame(enr_rows), pd.DataFrame(watched)

    gep_any = any(v for (f, _), v in verdicts.items() if f == "gep")
    other_any = any(v for (f, _), v in verdicts.items() if f != "gep")
    elapsed = time.perf_counter() - t0
    md = [
        "# AML subtypes across four cohorts (pre-registered protocol)", "",
        f"Produced by `nice -n 10 .venv/bin/python bench/aml_subtypes.py` ({elapsed:.0f} s, 1 torch thread). The "
        "protocol is `bench/aml_protocol.md`, committed (cbb0670) before this script read the Leucegene or BeatAML "
        f"survival. Model `aml` (weights sha256 {model.card['weights_sha256'][:12]}, {len(model.input_genes):,} input "
        f"genes over the 4 panels, {len(model.output_genes):,} output genes). Seeds fixed (0). GEPs from the "
        f"`{known.gep_estimator}` estimator" + (" (as registered)." if known.gep_estimator == "network" else
                                                " (a secondary run: the protocol was registered with the network's)."),
        "",
        "## Cohorts", "", markdown_table(pd.DataFrame(inputs).fillna(""), number_format=None), "",
        "## Data checks (label integrity of each cohort file)", "",
        "Pearson r of each cohort's gene means (log1p CPM) with the model's reference mean profile over the measured "
        "output genes; housekeeping genes that are 0 (a real RNA-seq sample always expresses them); Y-linked genes by "
        f"recorded sex (near 0 in women). A cohort passes when r >= {MIN_REFERENCE_R}.", "",
        markdown_table(pd.DataFrame(checks), number_format=None), "",
        "## Survival by subtype", "",
        "Subtypes found in TCGA-LAML; other cohorts assigned by nearest centroid on features z-scored within each "
        "cohort. HRs: Cox, subtype as a factor vs the discovery's best-prognosis subtype, adjusted for age and the "
        "risk covariate (complete cases, n in brackets). Best group: longest median OS (lowest hazard when a median "
        "is not reached). Holm over the 9 validation log-rank tests (a test not run counts as p = 1). "
        "Replicates: Holm p < 0.05 and the discovery's best group is the best there.", "",
        markdown_table(table, number_format=None), "",
        "Kaplan-Meier figures: " + ", ".join(f"`{f}`" for f in km_files) + ".", "",
        "## Verdict", "",
        "- GEP subtypes replicate in: " + (", ".join(n for (f, n), v in verdicts.items() if f == "gep" and v)
                                          or "**no validation cohort**") + ".",
        "- Proportion subtypes replicate in: " + (", ".join(n for (f, n), v in verdicts.items()
                                                            if f == "proportions" and v) or "no validation cohort") + ".",
        "- Published-fraction subtypes replicate in: " + (", ".join(
            n for (f, n), v in verdicts.items() if f == "published fractions" and v) or "no validation cohort") + ".",
        "- The paper's claim (GEP subtypes generalize, proportion subtypes do not) is "
        + ("**supported**" if gep_any and not other_any else "**not supported**") + " by this protocol on these "
        "gene panels.", "",
        "## Enrichment of the best-prognosis TCGA GEP subtype vs the rest", "",
        f"Best group {best}; prerank (Welch t of log1p CPM within the cell type's GEP), Hallmark + Reactome, "
        "1,000 permutations, seed 0; BH FDR. Descriptive (the group was chosen on TCGA survival).", "",
        markdown_table(enr_table, number_format=None), "",
        "Proteasome / ubiquitin and immune sets (all testable ones, significant or not):", "",
        markdown_table(watched_table, number_format=None) if len(watched_table) else
        "(no proteasome, ubiquitin or immune set reaches the minimum overlap with the output genes)", "",
        "## Clarifications (choices the protocol left to the code, fixed before the run)", "",
        "- Risk levels that say the risk is unknown (TARGET 'Unknown', Leucegene 'Undetermined') are missing for "
        "the adjusted Cox model (complete cases), not a level of their own.",
        "- Proportions enter as the package's `features=\"proportions\"` does: centred log-ratio (pseudo-count 1e-3), "
        "then z-scored within each cohort (the protocol says 'z-scored'; the CLR is the package default rule).",
        "- Published fractions: absolute CIBERSORTx scores of the 14 types divided by their sum; samples matched on "
        "the CIBERSORTx `sample` or `mixture_id` column, whichever matches the cohort's sample names more often, as "
        "given. " + " ".join(f"{n}." for n in notes),
        "- Samples without OS are left out before deconvolution (deconvolution is per sample, so the others do not "
        "change); 'all with OS' is the protocol's population.",
        "- The enrichment ranks every output gene, the ones the cohort's panel did not measure included "
        "(`include_inferred=True`): the protocol was run so before issue 25 made measured genes only the default "
        "(TCGA measures 37 of the 1,197).",
        "", "## Deviations", "",
        "- **Data checks, added after the first run of this protocol** (prompted by Leucegene's near-zero fit scores, "
        "median fit r 0.05, not by its survival; they change no test, only how a row is read): a cohort whose file "
        f"fails them (r < {MIN_REFERENCE_R}) has its GEP and proportion rows marked invalid, because BLUE read that "
        "file; they stay in the Holm family of 9, so the other tests are as strict as pre-registered. "
        "Failing: " + (", ".join(c["cohort"] for c in checks if not c["passes"]) or "none") + ". Its "
        "published-fraction row stands: those fractions were computed by Zeng et al. from the original data, not "
        "from this file. Leucegene is read from `shared/data/aml/leucegene373_*` (the protocol's files); it is not "
        "shipped as a sample cohort.",
        "- Runs: the script was run again after changes that alter no analysis choice and no number (a crash on a "
        "cohort with no matched published fractions, the table layout, the data-check section, PNG-only figures); "
        "every run gave the same survival results.",
        "- Published-fraction tests not run because fewer than 50 samples matched as given: "
        + (", ".join(f"{n} ({m} matched)" for n, m in unmatched.items()) or "none")
        + ". (TARGET's CIBERSORTx table names aliquots `TARGET-20-...-09A-01R` where the cohort file writes "
        "`TARGET.20....09A.01R`; BeatAML's uses BEAT lab IDs, which do not join to the dbGaP IDs of the expression "
        "file.) Each counts as p = 1 in the Holm family.", "",
        "## Caveats", "",
        "- TCGA's 714 genes are a random subset; TARGET's 1,984 genes were selected as differentially expressed by "
        "risk on a training split (TARGET associations are optimistic); Leucegene's 2,518 are random draws; BeatAML's "
        "469 were selected for high variance. No cohort is a full transcriptome, unlike the paper's.",
        "- TARGET is pediatric; Leucegene includes 44 relapse/refractory/post-treatment samples (the protocol's "
        "'all 373').",
    ]
    (out_dir / "aml_subtypes.md").write_text("\n".join(md) + "\n")
    table.to_csv(out_dir / "aml_subtypes.survival.csv", index=False)
    enr_table.to_csv(out_dir / "aml_subtypes.enrichment.csv", index=False)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
