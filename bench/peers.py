"""Peer benchmark: BLUE vs NNLS, nu-SVR (CIBERSORT), TAPE, Scaden and BayesPrism, in one run (issues 6, 25).

Usage (from the repository root, product venv active)::

    bash bench/peers_setup.sh           # once: TAPE + Scaden (PyPI scTAPE) in .peers-venv/, BayesPrism in .bayesprism-venv/
    nice -n 10 python bench/peers.py    # writes bench/results/peers.md and bench/results/peers_*.png
    python bench/peers.py --quick       # smaller test sets and no 10,000-sample timing (smoke run)

Every method runs in its own subprocess (one per method and task), so that its peak resident memory
(``ru_maxrss`` of that process) and its wall-clock times are measured apart; TAPE and Scaden run with
the ``.peers-venv`` interpreter, the others with this one. Each worker gets the same inputs:
a single-cell reference (cells x genes counts, labels in ``obs['cell_type']``) restricted to the genes
shared with the bulk, and the bulk (samples x the same genes, values as given: counts or TPM).

Tasks
-----
pbmc_pseudo   pbmc3k (clustifyr) split 80/20 by cell within each cell type; 7 coarse labels
              (``cell_type_coarse``); test = pseudo-bulk of the held-out cells.
xin_pseudo    Xin islets (scClassify) split the same way; 4 types.
monaco        pbmc3k (all cells, coarse labels) -> Monaco PBMC bulk TPM, scored against flow cytometry
              on 6 coarse types; GEPs scored against the ABIS sorted-cell signature.
fadista       Xin (all cells) -> Fadista islets bulk counts; predicted beta fraction vs HbA1c.

The script is the driver (data, tasks, subprocesses); ``peers_worker.py`` runs one method in its subprocess,
``peers_scoring.py`` scores, ``peers_report.py`` writes the report, ``peers_common.py`` holds the shared settings.

Data are read from ``../shared/data`` (override with env ``BLUE_SHARED_DATA``). Nothing is downloaded.
The truth tables (flow fractions, HbA1c, ABIS signature) are used for scoring only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_common import (BAYESPRISM_PYTHON, CELLS_PER_SAMPLE, COST_SIZES, DEFAULT_METHODS, METHODS,  # noqa: E402
                          MONACO_COARSE,
                          PEER_METHODS, PEERS_PYTHON, REPO, RESULTS, SEED, SHARED, WORK)
from peers_report import BAYESPRISM_HEADER, PUBLISHED_HEADER, write_bayesprism, write_published, write_report  # noqa: E402


# ----------------------------------------------------------------------------------------------
# Worker side (runs in a subprocess; peers' worker imports only numpy / pandas / anndata / TAPE)
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Driver side: data, tasks, subprocesses
# ----------------------------------------------------------------------------------------------


def _split_by_type(reference, fraction_test: float, seed: int):
    """Cell indices (train, test), a stratified split within each cell type."""
    rng = np.random.default_rng(seed)
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    train, test = [], []
    for cell_type in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(labels == cell_type))
        n_test = max(1, int(round(fraction_test * len(idx))))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(train), np.sort(test)


def _pseudobulk(reference, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Held-out pseudo-bulk: Dirichlet(1) fractions, 500 cells drawn with replacement, counts summed.

    Independent of every method's own simulator. Returns bulk (n, G) counts, realised cell fractions
    (n, K), truth GEPs (n, K, G) = CPM over the reference genes of the summed counts of each type's
    cells (0 where a type is absent), and the number of cells of each type (n, K).
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(reference.X, dtype=np.float64)
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    types = sorted(set(labels))
    pools = [np.flatnonzero(labels == t) for t in types]
    fractions = rng.dirichlet(np.ones(len(types)), size=n)
    cells = np.floor(fractions * CELLS_PER_SAMPLE).astype(int)
    bulk = np.zeros((n, X.shape[1]))
    profiles = np.zeros((n, len(types), X.shape[1]))
    for k, pool in enumerate(pools):
        # Draw every sample's cells of type k at once; W[i, c] = times cell c was drawn into sample i.
        drawn = rng.choice(pool, size=int(cells[:, k].sum()), replace=True)
        rows = np.repeat(np.arange(n), cells[:, k])
        W = sp.csr_matrix((np.ones(len(drawn)), (rows, drawn)), shape=(n, X.shape[0]))
        summed = np.asarray((W @ X).todense())
        bulk += summed
        totals = summed.sum(axis=1, keepdims=True)
        profiles[:, k] = np.divide(summed * 1e6, totals, out=np.zeros_like(summed), where=totals > 0)
    samples = [f"pb{i:04d}" for i in range(n)]
    realised = cells / cells.sum(axis=1, keepdims=True)
    return (
        pd.DataFrame(bulk, index=samples, columns=list(reference.var_names)),
        pd.DataFrame(realised, index=samples, columns=types),
        profiles,
        cells,
    )


def _write_group(
    name: str, reference, bulks: list[dict], *, primary: str, threads: int, blue_train: bool, smoke: bool
) -> Path:
    """Worker inputs of one reference group; every bulk is restricted to the same genes."""
    group_dir = WORK / name
    group_dir.mkdir(parents=True, exist_ok=True)
    genes = [g for g in reference.var_names if all(g in set(b["bulk"].columns) for b in bulks)]
    ref = reference[:, genes].copy()
    ref.obs = ref.obs[["cell_type"]].copy()
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(str).astype("category")
    ref.uns = {}
    ref.write_h5ad(group_dir / "reference.h5ad")
    (group_dir / "genes.json").write_text(json.dumps(genes))
    spec = {"name": name, "dir": str(group_dir), "primary": primary, "threads": threads, "blue_train": blue_train, "smoke": smoke,
            "n_genes": len(genes), "n_cells": int(ref.n_obs), "bulks": []}
    for b in bulks:
        np.save(group_dir / f"{b['name']}_bulk.npy", b["bulk"].loc[:, genes].to_numpy(dtype=np.float64))
        (group_dir / f"{b['name']}_samples.json").write_text(json.dumps([str(s) for s in b["bulk"].index]))
        if b.get("blue_model"):  # a pretrained model reads the cohort as shipped, all of its genes
            np.save(group_dir / f"{b['name']}_full.npy", b["bulk"].to_numpy(dtype=np.float64))
            (group_dir / f"{b['name']}_full_genes.json").write_text(json.dumps([str(g) for g in b["bulk"].columns]))
        spec["bulks"].append({k: b[k] for k in ("name", "gep_samples", "hr_samples", "cost_sizes", "blue_model")})
    (group_dir / "task.json").write_text(json.dumps(spec, indent=1))
    return group_dir


def _labelled_reference(path: Path, key: str):
    import anndata as ad

    ref = ad.read_h5ad(path)
    ref.obs["cell_type"] = ref.obs[key].astype(str)
    return ref


def prepare_groups(quick: bool, threads: int, blue_train: bool) -> tuple[dict[str, Path], dict[str, dict]]:
    """Load the real data, write the two reference groups' worker inputs; return dirs and truth per task.

    Group ``pbmc``: reference = pbmc3k training split (80 % of the cells of each coarse type), bulks =
    ``pbmc_pseudo`` (held-out cells) and ``monaco``. Group ``islet``: Xin training split, bulks =
    ``xin_pseudo`` and ``fadista``. One network per method and group serves both of its bulks.
    """
    n_test = 30 if quick else 100
    n_hr = 3 if quick else 8  # samples for TAPE's high-resolution mode (tens of seconds each)
    cost_sizes = (100,) if quick else COST_SIZES
    groups: dict[str, Path] = {}
    tasks: dict[str, dict] = {}

    monaco = pd.read_csv(SHARED / "pbmc" / "monaco_abis_bulk_tpm.csv.gz", index_col=0).T
    fine = pd.read_csv(SHARED / "pbmc" / "monaco_abis_truth_fine.csv", index_col=0)
    truth = pd.DataFrame({k: fine[v].sum(axis=1) for k, v in MONACO_COARSE.items()})
    truth = truth.div(truth.sum(axis=1), axis=0).loc[monaco.index]
    abis = pd.read_csv(SHARED / "pbmc" / "abis_signature_S0_granulator.csv.gz", index_col=0)
    tasks["monaco"] = {"group": "pbmc", "kind": "flow", "truth": truth, "abis": abis, "fine_truth": fine}

    fadista = pd.read_csv(SHARED / "pancreas" / "fadista77_bulk_counts.csv.gz", index_col=0).T
    clinical = pd.read_csv(SHARED / "pancreas" / "fadista77_clinical.csv", index_col=0)
    tasks["fadista"] = {"group": "islet", "kind": "hba1c", "clinical": clinical.loc[fadista.index]}

    setups = (
        ("pbmc", SHARED / "pbmc" / "pbmc3k_clustifyr.h5ad", "cell_type_coarse", "pbmc_pseudo", "monaco", monaco, "pbmc"),
        ("islet", SHARED / "pancreas" / "xin_scclassify.h5ad", "cell_type", "xin_pseudo", "fadista", fadista, "pancreas"),
    )
    for group, path, key, pseudo_name, real_name, real_bulk, blue_model in setups:
        ref = _labelled_reference(path, key)
        train_idx, test_idx = _split_by_type(ref, 0.2, SEED)
        bulk, fractions, profiles, cells = _pseudobulk(ref[test_idx], n_test, SEED + 1)
        gep_samples = list(range(n_test))
        hr_samples = list(range(min(n_hr, n_test)))
        shared = [g for g in ref.var_names if g in set(real_bulk.columns)]
        tasks[pseudo_name] = {
            "group": group, "kind": "pseudo", "truth": fractions, "profiles": profiles,
            "cells": cells, "hr_samples": hr_samples, "genes": list(bulk.columns), "n_train_cells": int(len(train_idx)),
            "n_test_cells": int(len(test_idx)), "n_genes": len(shared),
        }
        tasks[real_name]["n_genes"] = len(shared)
        bulks = [
            {"name": pseudo_name, "bulk": bulk, "gep_samples": gep_samples, "hr_samples": hr_samples,
             "cost_sizes": cost_sizes if group == "pbmc" else (), "blue_model": None},
            {"name": real_name, "bulk": real_bulk,
             "gep_samples": list(range(len(real_bulk))) if real_name == "monaco" else [],
             "hr_samples": list(range(3 if quick else len(real_bulk))) if real_name == "monaco" else [],
             "cost_sizes": (), "blue_model": blue_model},
        ]
        groups[group] = _write_group(group, ref[train_idx], bulks, primary=real_name, threads=threads,
                                     blue_train=blue_train, smoke=quick)
    return groups, tasks


def run_method(method: str, group_dir: Path, log) -> dict:
    """Run one method on one reference group in a subprocess; return its outputs per bulk."""
    out_dir = group_dir / f"out_{method}"
    python = (PEERS_PYTHON if method in PEER_METHODS else BAYESPRISM_PYTHON if method == "bayesprism"
              else Path(sys.executable))
    if not python.exists():
        log(f"  {method}: SKIPPED ({python} missing; run `bash bench/peers_setup.sh`)")
        return {"failed": f"{python.name} missing: run bash bench/peers_setup.sh"}
    threads = json.loads((group_dir / "task.json").read_text())["threads"]
    env = dict(os.environ, MPLBACKEND="Agg", TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", PYTHONHASHSEED="0", OMP_WAIT_POLICY="PASSIVE",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), str(Path(__file__).resolve().with_name("peers_worker.py")), "--worker", method, "--task", str(group_dir),
           "--out", str(out_dir)]
    start = time.perf_counter()
    with open(group_dir / f"{method}.log", "w") as handle:
        rc = subprocess.call(cmd, cwd=out_dir, stdout=handle, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if rc != 0:
        tail = (group_dir / f"{method}.log").read_text().strip().splitlines()[-3:]
        log(f"  {method}: FAILED rc={rc} after {wall:.0f} s: {' | '.join(tail)}")
        return {"failed": " ".join(tail)[-300:]}
    meta = json.loads((out_dir / "meta.json").read_text())
    for name, res in meta["bulks"].items():
        if res.get("failed"):
            continue
        res["proportions"] = pd.read_csv(out_dir / f"{name}_proportions.csv", index_col=0)
        res["proportions"].index = res["proportions"].index.astype(str)
        gep_path = out_dir / f"{name}_gep.npy"
        res["gep"] = np.load(gep_path) if gep_path.exists() else None
    meta["wall_s"] = wall
    log(f"  {method}: done in {wall:.0f} s (train {meta['train_s']:.1f} s, peak RSS {meta['peak_rss_mb']:.0f} MB)")
    return meta


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--published", action="store_true",
                        help="only (re)write the published-runs section of peers.md (issue 21)")
    parser.add_argument("--quick", action="store_true", help="small test sets, timing at 100 samples only")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--bayesprism-section", action="store_true",
                        help="only (re)write the BayesPrism section of peers.md from bench/results/bayesprism_cost.json")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per method (default 1)")
    parser.add_argument("--no-blue-train", action="store_true",
                        help="do not train BLUE on the pseudo-bulk splits (BLUE then has no held-out rows)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.published:
        print(write_published(args.out).read_text().split(PUBLISHED_HEADER, 1)[1])
        return 0
    if args.bayesprism_section:
        print(write_bayesprism(args.out).read_text().split(BAYESPRISM_HEADER, 1)[1])
        return 0
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.0f} s] {msg}", flush=True)

    log(f"data from {SHARED}; work dir {WORK}")
    groups, tasks = prepare_groups(args.quick, args.threads, not args.no_blue_train)
    outputs: dict[str, dict] = {}
    for group, group_dir in groups.items():
        log(f"group {group}")
        outputs[group] = {m: run_method(m, group_dir, log) for m in methods}
    path = write_report(outputs, tasks, methods, args, args.out, time.perf_counter() - t0)
    write_published(args.out)
    write_bayesprism(args.out)
    log(f"wrote {path}")
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
