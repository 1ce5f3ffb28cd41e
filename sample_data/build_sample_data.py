"""Rebuild the demo cohorts in sample_data/ from the project's shared real-data folder.

Developer script, run once by hand (never at run time; nothing is downloaded):

    python sample_data/build_sample_data.py --shared ../shared/data

Every change to the source files is listed in sample_data/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
from pathlib import Path

import pandas as pd

logger = logging.getLogger("build_sample_data")
HERE = Path(__file__).resolve().parent


def _write_bulk(frame: pd.DataFrame, directory: Path) -> None:
    frame.index.name = "gene"
    directory.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(float_format="%.10g").encode()
    (directory / "bulk.csv.gz").write_bytes(gzip.compress(text, compresslevel=9, mtime=0))


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    frame.index.name = "sample"
    frame.to_csv(path)


def _write_card(directory: Path, card: dict, bulk: pd.DataFrame) -> None:
    n_samples = int(bulk.select_dtypes("number").shape[1])  # annotation columns (TARGET) are not samples
    extra = {k: card.pop(k) for k in ("truth_mapping",) if k in card}  # written after the counts
    card = {**card, "n_genes": int(bulk.shape[0]), "n_samples": n_samples, **extra}
    (directory / "cohort.json").write_text(json.dumps(card, indent=2) + "\n")


def build(shared: Path) -> None:
    """Write the five cohorts (bulk.csv.gz, clinical/truth tables, cohort.json)."""
    # Monaco PBMC: TPM as given + flow-cytometry truth
    out = HERE / "monaco_pbmc"
    bulk = pd.read_csv(shared / "pbmc/monaco_abis_bulk_tpm.csv.gz", index_col=0)
    _write_bulk(bulk, out)
    for src, dst in [("monaco_abis_truth_coarse.csv", "truth.csv"), ("monaco_abis_truth_fine.csv", "truth_fine.csv")]:
        truth = pd.read_csv(shared / "pbmc" / src, index_col=0).loc[bulk.columns]
        _write_table(truth, out / dst)
    _write_card(out, {
        "name": "monaco_pbmc",
        "tissue": "blood (PBMC)",
        "title": "Monaco 2019: PBMC bulk RNA-seq of 12 donors with flow-cytometry truth",
        "description": "Whole-PBMC bulk RNA-seq from 12 healthy donors. truth.csv holds flow-cytometry fractions "
        "collapsed to 9 coarse cell types (+ unassigned); truth_fine.csv the 17 fine types. Use it to check "
        "estimated proportions against measured ones.",
        "units": "TPM",
        "source": "giannimonaco/ABIS data/TPMPBMC.txt; truth: Novartis/granulator data/groundTruth_ABIS.RData",
        "accession": "GSE107011",
        "citation": "Monaco G et al. RNA-Seq signatures normalized by mRNA abundance allow absolute deconvolution "
        "of human immune cell types. Cell Rep 2019;26:1627-1640",
        "licence": "GEO public data; flow truth as distributed in granulator (GPL-3)",
        "recommended_model": "pbmc",
        # flow types <-> model types (blue_core.analysis.tables.truth_mapping): the common vocabulary of the accuracy view;
        # the whole-blood model's granulocytes meet the flow panel's low-density granulocytes
        "truth_mapping": {"pbmc": {"model": {"B": "B", "CD4 T": "CD4 T", "CD8 T": "CD8 T", "NK": "NK", "Monocyte": "Monocyte", "mDC": "DC", "pDC": "DC"}, "truth": {"B": "B", "T_CD4": "CD4 T", "T_CD8": "CD8 T", "NK": "NK", "Monocyte": "Monocyte", "DC": "DC"}}, "blood": {"model": {"B": "B", "CD4 T": "CD4 T", "CD8 T": "CD8 T", "NK": "NK", "Monocyte": "Monocyte", "mDC": "DC", "pDC": "DC", "Neutrophil": "Granulocyte", "Eosinophil": "Granulocyte", "Basophil": "Granulocyte"}, "truth": {"B": "B", "T_CD4": "CD4 T", "T_CD8": "CD8 T", "NK": "NK", "Monocyte": "Monocyte", "DC": "DC", "Granulocyte_LD": "Granulocyte"}}},
    }, bulk)

    # Fadista islets: raw counts, genes with < 10 reads over all 77 donors removed
    out = HERE / "fadista_islets"
    bulk = pd.read_csv(shared / "pancreas/fadista77_bulk_counts.csv.gz", index_col=0)
    bulk = bulk.loc[bulk.sum(axis=1) >= 10]
    _write_bulk(bulk, out)
    clinical = pd.read_csv(shared / "pancreas/fadista77_clinical.csv", index_col=0).loc[bulk.columns]
    _write_table(clinical, out / "clinical.csv")
    _write_card(out, {
        "name": "fadista_islets",
        "tissue": "pancreatic islets",
        "title": "Fadista 2014: human islet bulk RNA-seq of 77 donors with HbA1c",
        "description": "Bulk RNA-seq of pancreatic islets from 77 organ donors (normal, impaired glucose tolerance "
        "and type 2 diabetes by HbA1c). clinical.csv: HbA1c (%), age, BMI, sex, HbA1c class. Relate estimated "
        "beta-cell fraction and beta-cell expression to HbA1c.",
        "units": "raw read counts (genes with < 10 reads over all donors removed)",
        "source": "meichendong/SCDC vignettes/data/fadista_77.rds",
        "accession": "GSE50244",
        "citation": "Fadista J et al. Global genomic and transcriptomic analysis of human pancreatic islets reveals "
        "novel genes influencing glucose metabolism. PNAS 2014;111:13924-13929",
        "licence": "GEO public data (the SCDC package licence field is a placeholder)",
        "recommended_model": "pancreas",
    }, bulk)

    # TCGA-LAML: 714 genes as given; survival keyed by the expression's aliquot barcodes
    out = HERE / "tcga_laml"
    bulk = pd.read_csv(shared / "aml/tcga_laml_expr_714genes.csv.gz", index_col=0)
    _write_bulk(bulk, out)
    survival = pd.read_csv(shared / "aml/tcga_laml173_survival_amlhierarchies.csv").rename(columns={"sample": "patient"})
    barcodes = pd.DataFrame({"sample": bulk.columns, "patient": [c[:12] for c in bulk.columns]})
    clinical = barcodes.merge(survival, on="patient", how="left", validate="one_to_one").set_index("sample")
    if clinical["age"].isna().any():
        raise RuntimeError("TCGA expression patients missing from the survival table")
    _write_table(clinical, out / "clinical.csv")
    _write_card(out, {
        "name": "tcga_laml",
        "tissue": "bone marrow / blood (adult AML)",
        "title": "TCGA-LAML: 173 adult AML patients, 714 genes, overall survival",
        "description": "Adult AML bulk RNA-seq (peripheral blood), a random 714-gene subset, with overall survival "
        "(os_days, os_event; 12 patients lack follow-up time) and cytogenetic / molecular risk. Few cell-type "
        "markers are among the 714 genes: proportions are poorly identified; use it to try the survival workflow.",
        "units": "RSEM normalized (upper-quartile) expression, non-log (inferred)",
        "source": "habilzare/iNETgrate data/toyRawAml.rda; survival: andygxzeng/AMLHierarchies TCGA_Clinical_anno.csv",
        "accession": "dbGaP phs000178 (TCGA-LAML)",
        "citation": "TCGA Research Network. Genomic and epigenomic landscapes of adult de novo acute myeloid "
        "leukemia. NEJM 2013;368:2059-2074",
        "licence": "TCGA open-access data; expression as distributed in iNETgrate (GPL-3)",
        "recommended_model": "aml",
    }, bulk)

    # TARGET-AML: 1984 DE genes, log2 TMM CPM as given (read_bulk converts back with a warning)
    out = HERE / "target_aml"
    bulk = pd.read_csv(shared / "aml/target_aml_expr_1984genes.csv.gz", index_col=0)
    _write_bulk(bulk, out)
    keep = [
        "os_days", "os_event", "efs_days", "efs_event", "risk_group", "age_years", "split_cmlmanuscript",
        "TARGET.USI", "Gender", "Protocol", "WBC.at.Diagnosis", "Bone.marrow.leukemic.blast.percentage....",
        "FAB.Category", "Primary.Cytogenetic.Code", "FLT3.ITD.positive.", "NPM.mutation", "CEBPA.mutation",
        "WT1.mutation", "First.Event", "Vital.Status",
    ]
    sample_cols = [c for c in bulk.columns if c.startswith("TARGET")]
    clinical = pd.read_csv(shared / "aml/target_aml_clinical.csv", index_col=0)[keep].loc[sample_cols]
    _write_table(clinical, out / "clinical.csv")
    _write_card(out, {
        "name": "target_aml",
        "tissue": "bone marrow / blood (pediatric AML)",
        "title": "TARGET-AML: 145 pediatric AML samples, 1,984 genes, overall and event-free survival",
        "description": "Pediatric AML bulk RNA-seq (119 bone marrow, 26 blood), 1,984 genes pre-selected as "
        "differentially expressed by risk on a training split (risk/survival analyses are optimistic). "
        "Values are log2 TMM CPM as published; BLUE converts them back to CPM with a warning. clinical.csv: "
        "os/efs days and events, COG risk group, mutations.",
        "units": "log2 TMM-normalized CPM (floor -7.17 = zero counts)",
        "source": "metamaden/cmlmanuscript data/deg_seset_targetaml.rda",
        "accession": "dbGaP phs000465 (TARGET-AML)",
        "citation": "Bolouri H et al. The molecular landscape of pediatric acute myeloid leukemia reveals recurrent "
        "structural alterations and age-specific mutational interactions. Nat Med 2018;24:103-112",
        "licence": "TARGET open-access data; package DESCRIPTION says MIT",
        "recommended_model": "aml",
    }, bulk)

    # Leucegene (aml/leucegene373_*) is not shipped: its expression file fails integrity checks (EEF1A1 and HBB
    # are 0 in every sample, the Y-linked ZFY is as high in women as in men; bench/results/aml_subtypes.md,
    # "Data checks"), so its gene labels do not match its values.

    # BeatAML: 469 high-variance genes, log2 as given; diagnostic AML specimens only (the survival population)
    out = HERE / "beataml"
    bulk = pd.read_csv(shared / "aml/beataml_469genes_expression.csv.gz", index_col=0)
    clinical = pd.read_csv(shared / "aml/beataml_clinical.csv", index_col=0).loc[bulk.columns]
    diagnostic = ((clinical["disease_stage_at_specimen"] == "Initial Diagnosis")
                  & clinical["dx_at_inclusion"].astype(str).str.startswith("ACUTE MYELOID"))
    bulk = bulk.loc[:, diagnostic.to_numpy()]
    _write_bulk(bulk, out)
    keep = ["os_days", "os_event", "vital_status", "eln2017_risk", "age_at_diagnosis", "sex", "cohort",
            "specimen_type", "disease_stage_at_specimen", "is_denovo", "is_transformed", "specific_dx_at_inclusion",
            "fab", "flt3_itd", "npm1", "wbc_count", "pct_blasts_bm", "pct_blasts_pb", "response_to_induction"]
    _write_table(clinical.loc[bulk.columns, keep], out / "clinical.csv")
    _write_card(out, {
        "name": "beataml",
        "tissue": "bone marrow / blood (adult AML)",
        "title": f"BeatAML: {bulk.shape[1]} adult AML specimens at diagnosis, 469 high-variance genes, overall survival",
        "description": "Adult AML bulk RNA-seq (BeatAML waves 1-4), the specimens taken at initial diagnosis of "
        "patients with AML at inclusion (residual, relapse and remission specimens and non-AML diagnoses left "
        "out), on 469 protein-coding genes the source selected for high variance. clinical.csv: overall "
        "survival (os_days, os_event; NaN where vital status is unknown), ELN 2017 risk, age, FLT3-ITD, NPM1. "
        "Values are log2 normalised expression; BLUE converts them back with a warning.",
        "units": "log2 normalised expression (RPKM-based, as distributed by BeatAML2)",
        "source": "JenniferCrockett/AMLsubtypes_geneExpression data/rna_normexp_filt.RDS and "
        "raw_data/beataml_wv1to4_clinical.xlsx (commit c606a64; 49 duplicate columns dropped)",
        "accession": "dbGaP phs001657 (BeatAML)",
        "citation": "Tyner JW et al. Functional genomic landscape of acute myeloid leukaemia. Nature "
        "2018;562:526-531; Bottomly D et al. Cancer Cell 2022;40:850-864",
        "licence": "BeatAML2 public data (no licence file in the source repository)",
        "recommended_model": "aml",
    }, bulk)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared" / "data")
    build(parser.parse_args().shared)
