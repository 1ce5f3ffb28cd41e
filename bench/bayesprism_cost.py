"""Can BayesPrism join the peer benchmark? Its Python port's cost on the peers' real inputs (issue 25.4).

The issue asks for BayesPrism as a peer (proportions and GEPs) if the port (PyPI ``bayesprism`` 0.1.0) installs and
runs on these cohorts within 30 min each. This script measures, in the port's own venv (``bash
bench/peers_setup.sh`` makes ``.bayesprism-venv``), ``run_prism`` with the port's settings on the peers' *pbmc*
group: the pbmc3k training split (80 % of each coarse type's cells, seed 0, as ``bench/peers.py``) on the genes it
shares with Monaco, and 2 Monaco samples, at two short Gibbs chains (chain 40 and 80, burn-in half, thinning 2),
one thread. Its Gibbs sampler loops in Python over samples x iterations x genes, so the time is
``fixed + samples x chain x seconds per sample-iteration``; the slope between the two chains gives the last term,
and the port's default chain (1,000, run twice: the initial and the final sampling) gives each task's estimate.
The islet tasks (913 genes) are scaled by their gene count (the inner loop is over genes).

    .bayesprism-venv/bin/python bench/bayesprism_cost.py      # writes bench/results/bayesprism_cost.{md,json}

Then ``python bench/peers.py --bayesprism-section`` puts the verdict into ``bench/results/peers.md``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_common import RESULTS, SEED, SHARED  # noqa: E402

#: The peers' tasks: samples and genes (``bench/peers.py``: 100 held-out pseudo-bulks per group).
TASKS = {"pbmc_pseudo": (100, None), "monaco": (12, None), "xin_pseudo": (100, 913), "fadista": (77, 913)}
CHAINS = (40, 80)
DEFAULT_CHAIN = 1000
LIMIT_S = 30 * 60


def _reference_and_bulk():
    import anndata as ad

    ref = ad.read_h5ad(SHARED / "pbmc" / "pbmc3k_clustifyr.h5ad")
    labels = ref.obs["cell_type_coarse"].astype(str).to_numpy()
    rng = np.random.default_rng(SEED)  # the peers' split: 80 % of each type's cells
    train = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == t))[: int(round(0.8 * (labels == t).sum()))]
                                    for t in sorted(set(labels))]))
    monaco = pd.read_csv(SHARED / "pbmc" / "monaco_abis_bulk_tpm.csv.gz", index_col=0).T
    genes = [g for g in ref.var_names if g in set(monaco.columns)]
    X = ref[train, genes].X
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)
    return X, [str(c) for c in labels[train]], genes, monaco.loc[:, genes].iloc[:2]


def _run(X, labels, genes, bulk, chain: int) -> float:
    import torch
    from bayesprism import get_exp, get_fraction, new_prism, run_prism
    from bayesprism.models import GibbsControl
    from returns.maybe import Nothing, Some

    torch.set_num_threads(1)
    control = GibbsControl(seed=Some(SEED), num_threads=1, chain_length=chain, burn_in=chain // 2)
    start = time.perf_counter()
    prism = new_prism(reference=X, cell_type_labels=labels, cell_state_labels=Nothing,
                      mixture=bulk.to_numpy(dtype=np.float32), gene_names=Some(tuple(genes)),
                      bulk_names=Some(tuple(bulk.index))).unwrap()
    fitted = run_prism(prism, gibbs_control=Some(control)).unwrap()
    get_fraction(fitted).unwrap()
    get_exp(fitted, "type", labels[0]).unwrap()
    return time.perf_counter() - start


def main() -> int:
    import importlib.metadata as md

    X, labels, genes, bulk = _reference_and_bulk()
    times = {c: _run(X, labels, genes, bulk, c) for c in CHAINS}
    n = len(bulk)
    per_iteration = (times[CHAINS[1]] - times[CHAINS[0]]) / (CHAINS[1] - CHAINS[0]) / n  # s per sample-iteration
    fixed = times[CHAINS[0]] - per_iteration * CHAINS[0] * n
    rows = []
    for task, (samples, task_genes) in TASKS.items():
        scale = (task_genes or len(genes)) / len(genes)
        estimate = max(fixed, 0.0) + samples * DEFAULT_CHAIN * per_iteration * scale
        rows.append({"task": task, "samples": samples, "genes": task_genes or len(genes),
                     "estimated_min": estimate / 60, "within_30_min": bool(estimate <= LIMIT_S)})
    result = {"bayesprism_version": md.version("bayesprism"), "torch_threads": 1, "reference_cells": int(len(labels)),
              "genes": len(genes), "measured_samples": n, "measured_s": {str(c): t for c, t in times.items()},
              "s_per_sample_iteration": per_iteration, "fixed_s": fixed, "default_chain": DEFAULT_CHAIN,
              "tasks": rows, "cpu_count": os.cpu_count()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bayesprism_cost.json").write_text(json.dumps(result, indent=1))
    lines = ["# BayesPrism (Python port) on the peers' inputs: cost (issue 25.4)", "",
             f"Produced by `.bayesprism-venv/bin/python bench/bayesprism_cost.py` (bayesprism "
             f"{result['bayesprism_version']}, 1 thread, {os.cpu_count()}-core shared machine). pbmc3k training split "
             f"({len(labels):,} cells) on the {len(genes):,} genes shared with Monaco; {n} Monaco samples; Gibbs chains "
             f"{CHAINS[0]} and {CHAINS[1]} (burn-in half): {times[CHAINS[0]]:.0f} s and {times[CHAINS[1]]:.0f} s. "
             f"Slope: {per_iteration * 1e3:.0f} ms per sample and chain iteration (both samplings). Estimates at the "
             f"port's default chain ({DEFAULT_CHAIN:,}), islet tasks scaled by gene count:", "",
             "| task | samples | genes | estimated minutes | within 30 min |", "|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['samples']} | {r['genes']:,} | {r['estimated_min']:,.0f} | "
              f"{'yes' if r['within_30_min'] else 'no'} |" for r in rows]
    (RESULTS / "bayesprism_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
