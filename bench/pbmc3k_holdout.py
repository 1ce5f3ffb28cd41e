"""Held-out accuracy of the BLUE engine on the real pbmc3k reference.

Train on 80 % of the pbmc3k cells (stratified by cell type; the single donor cannot be split), simulate
pseudo-bulk from the other 20 % (cells never seen in training), and score:

* proportions: Lin's CCC over all (sample, cell type) pairs (goal >= 0.95), plus per-type Pearson r;
* GEPs: for each cell type, the per-sample Pearson r between predicted and true profile on log1p(CPM)
  over the type's top 50 marker genes (markers ranked on the training cells, among the output genes),
  median over the samples where the type is present; then the median over cell types (goal >= 0.9);
* GEP RMSE (log1p CPM, all output genes, samples where the type is present) against the trivial
  baseline that predicts each type's mean profile in the training cells (must be lower).

Run from the repo root::

    nice -n 10 python bench/pbmc3k_holdout.py            # writes bench/results/pbmc3k_holdout.md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from blue_core.engine.baselines import nnls_proportions, signature_from_reference  # noqa: E402
from blue_core.engine.gene_selection import marker_scores  # noqa: E402
from blue_core.engine.inference import deconvolve  # noqa: E402
from blue_core.io import read_reference  # noqa: E402
from blue_core.analysis.metrics import ccc, pearson  # noqa: E402
from blue_core.engine.simulation import simulate
from blue_core.engine.reference_cells import split_reference  # noqa: E402
from blue_core.engine.training import train_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table  # noqa: E402  (re-exported for architecture.py)

PBMC3K = REPO.parent / "shared" / "data" / "pbmc" / "pbmc3k_clustifyr.h5ad"
RESULTS = REPO / "bench" / "results"
N_MARKERS = 50


def reference_mean_profiles(reference, cell_types, genes) -> np.ndarray:
    """``(K, G)`` CPM over ``genes`` of the summed counts of each cell type's cells."""
    X = reference[:, genes].X
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    out = np.zeros((len(cell_types), len(genes)))
    for k, cell_type in enumerate(cell_types):
        summed = np.asarray(X[labels == cell_type].sum(0)).ravel()
        out[k] = summed / max(summed.sum(), 1e-12) * 1e6
    return out


def evaluate(model, train_ref, test_ref, *, n_test: int = 1000, seed: int = 123) -> dict:
    """Score a trained model on pseudo-bulk from held-out cells; returns metrics and per-type tables."""
    pb = simulate(test_ref, n_test, cells_per_sample=500, cell_types=model.cell_types,
                  output_genes=model.output_genes, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        result = deconvolve(pb.bulk_frame(), model)
        infer_s = time.perf_counter() - t0
    true_p, pred_p = pb.proportions.to_numpy(), result.proportions.to_numpy()
    signature = signature_from_reference(train_ref, genes=model.input_genes)[model.cell_types]
    nnls_p = nnls_proportions(pb.bulk_frame(), signature)[model.cell_types].to_numpy()
    scores = marker_scores(train_ref).loc[model.output_genes]
    baseline = np.log1p(reference_mean_profiles(train_ref, model.cell_types, model.output_genes))
    rows = []
    for k, cell_type in enumerate(model.cell_types):
        markers = scores[cell_type].sort_values(ascending=False).index[:N_MARKERS]
        idx = np.array([model.output_genes.index(g) for g in markers])
        present = np.flatnonzero(true_p[:, k] > 0)
        true_g = np.log1p(pb.profiles[present, k])
        pred_g = np.log1p(result.expression[present, k])
        r = [pearson(true_g[i, idx], pred_g[i, idx]) for i in range(present.size)]
        r_base = [pearson(true_g[i, idx], baseline[k, idx]) for i in range(present.size)]
        rows.append(dict(
            cell_type=cell_type,
            proportion_r=pearson(true_p[:, k], pred_p[:, k]),
            nnls_proportion_r=pearson(true_p[:, k], nnls_p[:, k]),
            gep_marker_r=float(np.nanmedian(r)),
            baseline_marker_r=float(np.nanmedian(r_base)),
            gep_rmse=float(np.sqrt(np.mean((true_g - pred_g) ** 2))),
            baseline_rmse=float(np.sqrt(np.mean((true_g - baseline[k]) ** 2))),
            n_samples_present=int(present.size),
        ))
    table = pd.DataFrame(rows)
    summary = dict(
        proportion_ccc=ccc(true_p, pred_p),
        proportion_rmse=float(np.sqrt(np.mean((true_p - pred_p) ** 2))),
        nnls_ccc=ccc(true_p, nnls_p),
        nnls_rmse=float(np.sqrt(np.mean((true_p - nnls_p) ** 2))),
        gep_marker_r_median=float(table["gep_marker_r"].median()),
        baseline_marker_r_median=float(table["baseline_marker_r"].median()),
        gep_rmse_mean=float(table["gep_rmse"].mean()),
        baseline_rmse_mean=float(table["baseline_rmse"].mean()),
        inference_s=infer_s,
        n_test_samples=n_test,
    )
    return dict(summary=summary, per_type=table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-samples", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--network", default="{}", help="JSON dict of BlueNet overrides")
    parser.add_argument("--simulation", default="{}", help="JSON dict of simulate() options for training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "pbmc3k_holdout.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    reference = read_reference(PBMC3K)
    train_ref, test_ref, _ = split_reference(reference, fractions=(0.8, 0.2, 0.0), seed=args.seed)
    t0 = time.perf_counter()
    model = train_model(train_ref, n_samples=args.n_samples, epochs=args.epochs, threads=args.threads,
                        network=json.loads(args.network), simulation=json.loads(args.simulation), seed=args.seed,
                        name="pbmc3k-holdout")
    train_s = time.perf_counter() - t0
    res = evaluate(model, train_ref, test_ref)
    s = res["summary"]
    n_params = sum(p.numel() for p in model.network.parameters())
    lines = [
        "# pbmc3k held-out pseudo-bulk accuracy",
        "",
        f"Command: `nice -n 10 python bench/pbmc3k_holdout.py {' '.join(argv or sys.argv[1:])}`".rstrip() + "  ",
        f"Reference: pbmc3k ({reference.n_obs} cells, {reference.n_vars} genes); train {train_ref.n_obs} cells, "
        f"held-out {test_ref.n_obs} cells; {s['n_test_samples']} test pseudo-bulks x 500 cells.  ",
        f"Model: {len(model.input_genes)} input genes, {len(model.output_genes)} output genes, {n_params:,} parameters "
        f"(~{4 * n_params / 1e6:.1f} MB), network {model.network.config}; trained {train_s:.0f} s on "
        f"{args.threads} threads, best epoch {model.card['validation']['best_epoch']} of "
        f"{model.card['training']['epochs_run']}.",
        "",
        "| metric | BLUE | baseline | goal |",
        "|---|---|---|---|",
        f"| proportions CCC (all sample x type pairs) | {s['proportion_ccc']:.3f} | NNLS {s['nnls_ccc']:.3f} | >= 0.95 |",
        f"| proportions RMSE | {s['proportion_rmse']:.4f} | NNLS {s['nnls_rmse']:.4f} | - |",
        f"| GEP median r, top {N_MARKERS} markers, log1p CPM | {s['gep_marker_r_median']:.3f} | "
        f"{s['baseline_marker_r_median']:.3f} | >= 0.9 |",
        f"| GEP RMSE log1p CPM (mean over types) | {s['gep_rmse_mean']:.3f} | {s['baseline_rmse_mean']:.3f} | "
        "lower than baseline |",
        "",
        "Baselines: proportions = NNLS (blue_core.engine.baselines) on the training cells' mean CPM profiles over the "
        "model's input genes; GEPs = each type's mean profile in the training cells (the same for every sample).",
        "",
        "Per cell type:",
        "",
        markdown_table(res["per_type"]),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
