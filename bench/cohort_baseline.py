"""Issue 21, the starting point: the shipped `pbmc` model and the published peer runs on the PBMC cohorts with flow.

Scored the way issue 21 states it: the five groups every cohort has (B, CD4 T, CD8 T, NK, monocytes), each
prediction and truth renormalised over them, CCC over all sample x type pairs, and per-type bias
mean(predicted - truth). BLUE rows come from `deconvolve` of the shipped model (no setting chosen here);
published rows are each tool's own run with its authors' references (../shared/data/pbmc/published_peer_predictions,
MIT), labelled "published run". No number here was used to choose anything.

    python bench/cohort_baseline.py          # writes bench/results/cohort_baseline.md (+ .json)
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "pbmc"
GROUPS = ["B", "CD4 T", "CD8 T", "NK", "Monocyte"]
TRUTH_NAMES = {"B": "B", "T_CD4": "CD4 T", "T_CD8": "CD8 T", "NK": "NK", "Monocyte": "Monocyte"}
PEER_NAMES = {"Bcells": "B", "CD4Tcells": "CD4 T", "CD8Tcells": "CD8 T", "NK": "NK", "Monocytes": "Monocyte"}
PEERS = ["DISSECT", "Linear_MLPs", "BayesPrism", "BayesPrism-M", "CibersortX", "Scaden", "TAPE-A", "TAPE-O", "MuSiC"]


def five(frame: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """The five groups, renormalised to sum 1 per sample."""
    out = frame.rename(columns=names)[GROUPS].astype(float)
    return out.div(out.sum(axis=1), axis=0)


def score(truth: pd.DataFrame, pred: pd.DataFrame) -> dict:
    from blue_core.analysis.metrics import ccc, pearson

    pred = pred.loc[truth.index]
    return {"n": len(truth), "ccc": ccc(truth, pred),
            **{f"bias {t}": float((pred[t] - truth[t]).mean()) for t in GROUPS},
            **{f"r {t}": pearson(truth[t], pred[t]) for t in GROUPS}}


def cohorts() -> dict[str, tuple[Path, pd.DataFrame, str]]:
    """name -> (bulk file, five-group truth, published-prediction suffix)."""
    monaco = pd.read_csv(REPO / "sample_data" / "monaco_pbmc" / "truth.csv", index_col=0)
    sdy67 = pd.read_csv(SHARED / "sdy67_pbmc12_truth.csv", index_col=0)
    return {
        "Monaco (12)": (REPO / "sample_data" / "monaco_pbmc" / "bulk.csv.gz", five(monaco, TRUTH_NAMES), "MonacoI"),
        "SDY67 (12)": (SHARED / "sdy67_pbmc12_bulk_counts.csv.gz", five(sdy67, TRUTH_NAMES), "SDY67"),
    }


def published_rows(cohort: str, truth: pd.DataFrame, suffix: str) -> list[dict]:
    """The published peer runs on one cohort (each tool's own run and reference), scored like BLUE."""
    rows = []
    for peer in PEERS:
        file = SHARED / "published_peer_predictions" / f"{peer}_{suffix}.tsv"
        if not file.is_file():
            continue
        pred = pd.read_csv(file, sep="\t", index_col=0)
        if suffix == "SDY67":  # rows in the order of the truth table (sample_0 = first truth row)
            pred.index = list(truth.index)[: len(pred)]
        if not set(truth.index) <= set(pred.index):
            continue
        rows.append({"cohort": cohort, "method": peer, "kind": "published run", **score(truth, five(pred, PEER_NAMES))})
    return rows


def main() -> int:
    from blue_core.engine.inference import deconvolve
    from blue_core.io import read_bulk
    from blue_core.engine.model import load_model

    model = load_model("pbmc")
    rows = []
    for cohort, (path, truth, suffix) in cohorts().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bulk = read_bulk(path)
            result = deconvolve(bulk, model, adapt=False)
        rows.append({"cohort": cohort, "method": "BLUE pbmc (shipped)", "kind": "this repo",
                     **score(truth, five(result.proportions, {}))})
        rows += published_rows(cohort, truth, suffix)
    table = pd.DataFrame(rows)
    out = REPO / "bench" / "results"
    (out / "cohort_baseline.json").write_text(json.dumps(rows, indent=1) + "\n")
    shown = table[["cohort", "method", "kind", "n", "ccc"] + [f"bias {t}" for t in GROUPS]].copy()
    for column in shown.columns[4:]:
        shown[column] = shown[column].map(lambda v: f"{v:+.2f}" if "bias" in column else f"{v:.2f}")
    lines = [
        "# The shipped pbmc model and published peer runs on PBMC cohorts with flow (issue 21 baseline)",
        "",
        "Produced by `python bench/cohort_baseline.py`. Five groups (B, CD4 T, CD8 T, NK, monocytes), prediction and "
        "flow truth each renormalised over them; CCC over all sample x type pairs; bias = mean(predicted - truth) "
        "per type. 'published run' = the tool's own run with its authors' reference, from the DISSECT paper's "
        "figure data (Khatri et al. 2024; imsb-uke/deconvolution, MIT), not a same-reference comparison. Monaco "
        "was used when the shipped model's settings were chosen; SDY67 was not. Nothing here chose a setting.",
        "",
        markdown_table(shown),
        "",
        "Goal of issue 21 (not met by the shipped model): held-out CCC >= 0.80 on every cohort and |bias| <= 0.07 "
        "for every type.",
        "",
    ]
    (out / "cohort_baseline.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
