"""``blue subtypes`` and ``blue enrich``: patient subtypes, survival and gene-set enrichment.

Both commands read a directory written by ``blue deconvolve`` (``expression.h5ad``,
``proportions.csv``, ``fit.csv``). User errors raise ``BlueInputError``; the dispatcher prints them
as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.clinical import guess_time_unit, read_clinical
from ..io.strictjson import dumps, jsonable
from ..exceptions import BlueInputError
from ..io.files import restore_formulas, write_csv

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``subtypes`` and ``enrich`` sub-commands."""
    p = subparsers.add_parser(
        "subtypes",
        help="cluster patients into subtypes (GEPs or proportions) and compare their survival",
        description=(
            "Consensus clustering of the samples of a deconvolution on predicted cell-type GEPs "
            "(or proportions), then Kaplan-Meier / log-rank / Cox survival by subtype. Writes "
            "OUT/subtypes.csv (sample, subtype) and OUT/survival.json. With --validate, a nearest-centroid "
            "classifier trained on these subtypes (on genes both deconvolutions output) assigns the samples "
            "of a second cohort: OUT/validation_subtypes.csv and OUT/validation_survival.json."
        ),
    )
    p.add_argument("deconv_dir", metavar="DECONV_DIR", help="output directory of `blue deconvolve`")
    p.add_argument("--clinical", metavar="FILE", help="clinical table (csv/tsv/xlsx) with sample, time and event columns")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument("--k", type=int, default=None, help="number of subtypes (default: chosen by PAC in 2..6)")
    p.add_argument("--features", choices=["gep", "proportions"], default="gep", help="features to cluster on")
    p.add_argument("--cell-types", nargs="+", metavar="CT", default=None, help="cell types to use (default all)")
    p.add_argument("--n-top-genes", type=int, default=200, help="most variable genes per cell type (gep)")
    p.add_argument("--n-resamples", type=int, default=100, help="consensus-clustering resamples")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--time-col", default="os_days", help="survival time column (default os_days)")
    p.add_argument("--event-col", default="os_event", help="event column, 1 = death (default os_event)")
    p.add_argument("--sample-col", default="sample", help="sample ID column of the clinical table")
    p.add_argument("--validate", metavar="OTHER_DECONV_DIR", default=None, help="deconvolution of a validation cohort")
    p.add_argument("--validate-clinical", metavar="FILE", default=None, help="clinical table of the validation cohort")
    p.set_defaults(func=_run_subtypes)

    e = subparsers.add_parser(
        "enrich",
        help="gene-set enrichment of one subtype vs the rest within one cell type's GEP",
        description=(
            "Ranks the genes of one cell type's predicted GEP by Welch t (GROUP vs the other samples, "
            "log1p CPM) and runs GSEA preranked (or over-representation) against the shipped Hallmark and "
            "Reactome gene sets (or your GMT files). Writes a table (csv)."
        ),
    )
    e.add_argument("deconv_dir", metavar="DECONV_DIR", help="output directory of `blue deconvolve`")
    e.add_argument("--subtypes", metavar="CSV", required=True, help="subtypes.csv from `blue subtypes`")
    e.add_argument("--group", required=True, help="subtype to test against the rest (e.g. S1)")
    e.add_argument("--cell-type", required=True, help="cell type whose GEP is ranked")
    e.add_argument("--out", metavar="CSV", required=True, help="output table")
    e.add_argument("--gene-sets", nargs="+", default=["hallmark", "reactome"],
                   help="collections (hallmark, reactome) or .gmt paths")
    e.add_argument("--method", choices=["prerank", "ora"], default="prerank")
    e.add_argument("--permutations", type=int, default=1000, help="prerank permutations")
    e.add_argument("--min-size", type=int, default=None, help="smallest set overlap tested (default adapts)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--include-inferred", action="store_true",
                   help="also rank the genes your data did not measure (their profiles are inferred; left out by default)")
    e.set_defaults(func=_run_enrich)


# --------------------------------------------------------------------------- helpers
def _read_deconvolution(directory: str | Path) -> Any:
    from ..engine.result import Deconvolution

    directory = Path(directory)
    if not directory.is_dir():
        raise BlueInputError(f"{str(directory)!r} is not a directory: pass the --out directory of `blue deconvolve`.")
    return Deconvolution.read(directory)


def _read_labels(path: str | Path) -> pd.Series:
    frame = restore_formulas(read_clinical(path, sample_col="sample", what="subtype table"))
    cols = {c.lower(): c for c in frame.columns}
    if "subtype" not in cols:
        raise BlueInputError(
            f"The subtype table {Path(path).name} needs columns 'sample' and 'subtype' (as written by "
            f"`blue subtypes`); it has {[frame.index.name, *frame.columns]}."
        )
    return pd.Series(frame[cols["subtype"]].astype(str).to_numpy(), index=frame.index, name="subtype")


def _write_labels(labels: pd.Series, path: Path) -> None:
    write_csv(labels.rename_axis("sample").rename("subtype").to_frame(), path)


def _survival(labels: pd.Series, clinical_path: str, args: argparse.Namespace) -> Any:
    from ..analysis.survival import SurvivalAnalysis

    clinical = read_clinical(clinical_path, sample_col=args.sample_col)
    return SurvivalAnalysis(args.time_col, args.event_col, sample_col=args.sample_col,
                            time_unit=guess_time_unit(args.time_col)).fit(labels, clinical)


def _report(out: dict[str, Any], title: str) -> None:
    lines = [f"{title}: n={out['n_matched']} matched, log-rank p = {out['logrank']['p']:.3g}"]
    for g in out["groups"]:
        med = "not reached" if g["median_survival"] is None else f"{g['median_survival']:.0f} {out['time_unit']}"
        hr = "ref" if g["group"] == out["reference"] else (
            "n/a" if g["hr"] is None else f"{g['hr']:.2f} [{g['hr_lower']:.2f}, {g['hr_upper']:.2f}]")
        lines.append(f"  {g['group']}: n={g['n']} events={g['events']} median={med} HR={hr}")
    for note in out["notes"]:
        lines.append(f"  note: {note}")
    sys.stdout.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- commands
def _run_subtypes(args: argparse.Namespace) -> int:
    from ..analysis.subtypes import SubtypeClustering
    from ..analysis.subtype_validation import validate_subtypes, validation_genes
    from ..analysis.survival import best_prognosis_group

    if args.validate and not args.validate_clinical:
        raise BlueInputError("--validate needs --validate-clinical FILE (the validation cohort's survival table).")
    if args.validate_clinical and not args.validate:
        raise BlueInputError("--validate-clinical needs --validate OTHER_DECONV_DIR (the validation deconvolution).")
    deconv = _read_deconvolution(args.deconv_dir)
    other = _read_deconvolution(args.validate) if args.validate else None
    genes = None
    if other is not None:
        genes = validation_genes(deconv, other, features=args.features, cell_types=args.cell_types)
        if genes is not None:
            logger.info("validation: %d output genes shared by both cohorts", len(genes))
    from tqdm import tqdm

    with tqdm(total=args.n_resamples, desc="consensus clustering", unit="resample", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:

        def _progress(fraction: float, message: str) -> None:
            bar.update(round(fraction * args.n_resamples) - bar.n)

        sc = SubtypeClustering(
            args.k, features=args.features, cell_types=args.cell_types, genes=genes, n_top_genes=args.n_top_genes,
            n_resamples=args.n_resamples, seed=args.seed,
        ).fit(deconv, progress=_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_labels(sc.labels_, out / "subtypes.csv")
    sys.stdout.write(f"subtypes ({args.features}, k={sc.k_}): "
                     + ", ".join(f"{r.subtype} n={r.n} stability={r.stability:.2f}" for r in sc.summary.itertuples())
                     + f"\nwrote {out / 'subtypes.csv'}\n")
    for text in sc.support_warnings():
        sys.stdout.write(f"warning: {text}\n")
    clustering = {
        "features": args.features, "k": int(sc.k_), "n_features": len(sc.features_),
        "cell_types": args.cell_types or list(deconv.cell_types),
        "subtypes": [{"subtype": r.subtype, "n": int(r.n), "stability": jsonable(float(r.stability))}
                     for r in sc.summary.itertuples()],
        "k_scores": [{"k": int(r.k), "pac": jsonable(float(r.pac)), "silhouette": jsonable(float(r.silhouette))}
                     for r in sc.k_scores_.itertuples()],
        "support_warnings": sc.support_warnings(),
    }
    analysis = None
    if args.clinical:
        from ..plotting import save_km

        analysis = _survival(sc.labels_, args.clinical, args)
        surv = analysis.to_dict()
        surv["clustering"] = clustering
        (out / "survival.json").write_text(dumps(surv))
        figures = save_km(analysis, out, name="kaplan_meier")
        _report(surv, "discovery survival")
        sys.stdout.write(f"wrote {out / 'survival.json'}, {', '.join(str(f) for f in figures)}\n")
    if other is not None:
        validation = validate_subtypes(sc, other, clinical=read_clinical(args.validate_clinical, sample_col=args.sample_col),
                                       time_col=args.time_col, event_col=args.event_col, sample_col=args.sample_col,
                                       title=Path(args.validate).name,
                                       discovery_best=best_prognosis_group(analysis) if analysis is not None else None)
        _write_labels(validation.labels, out / "validation_subtypes.csv")
        surv = validation.survival.to_dict()
        surv["classifier"] = {"method": "nearest centroid on within-cohort z-scored features",
                              "n_features": validation.n_features}
        surv["replicated"] = validation.replicated
        surv["verdict"] = validation.verdict
        (out / "validation_survival.json").write_text(dumps(surv))
        from ..plotting import save_km

        save_km(validation.survival, out, name="kaplan_meier_validation", title=f"Validation: {validation.title}")
        _report(surv, "validation survival")
        sys.stdout.write(validation.verdict + "\n")
        sys.stdout.write(f"wrote {out / 'validation_subtypes.csv'} and {out / 'validation_survival.json'}\n")
    return 0


def _run_enrich(args: argparse.Namespace) -> int:
    from ..analysis.enrichment import enrich

    deconv = _read_deconvolution(args.deconv_dir)
    labels = _read_labels(args.subtypes)
    table = enrich(
        deconv, labels, group=args.group, cell_type=args.cell_type, gene_sets=args.gene_sets, method=args.method,
        permutations=args.permutations, min_size=args.min_size, seed=args.seed, include_inferred=args.include_inferred,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(table, out, index=False)
    a = table.attrs
    sys.stdout.write(
        f"{a['method']}: {args.group} (n={a['n_group']}) vs rest (n={a['n_rest']}) in {args.cell_type}; "
        f"{a['n_sets_tested']} of {a['n_sets_total']} sets testable on {a['n_panel_genes']} genes "
        f"(min_size={a['min_size']}); {int((table['fdr'] < 0.05).sum())} with FDR < 0.05\n"
        + (f"{a['n_inferred_left_out']} genes your data did not measure were left out (--include-inferred tests "
           "them)\n" if a.get("n_inferred_left_out") else "") + f"wrote {out}\n"
    )
    return 0
