"""Peer benchmark: BLUE vs NNLS, nu-SVR (CIBERSORT), TAPE and Scaden, in one run (issue 6).

Usage (from the repository root, product venv active)::

    bash bench/peers_setup.sh           # once: TAPE + Scaden (PyPI scTAPE) in .peers-venv/
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

Data are read from ``../shared/data`` (override with env ``BLUE_SHARED_DATA``). Nothing is downloaded.
The truth tables (flow fractions, HbA1c, ABIS signature) are used for scoring only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BLUE_SHARED_DATA", REPO.parent / "shared" / "data"))
WORK = REPO / "bench" / "_work" / "peers"
RESULTS = REPO / "bench" / "results"
PEERS_PYTHON = REPO / ".peers-venv" / "bin" / "python"

SEED = 0
CELLS_PER_SAMPLE = 500
MARKERS_PER_TYPE = 50  # signature genes per cell type for NNLS / nu-SVR (fixed a priori)
COST_SIZES = (100, 1_000, 10_000)
#: Largest n actually timed per method; larger n are extrapolated linearly from it and marked "est."
#: (nu-SVR fits every sample apart; TAPE's adaptive stage runs 1,800 full-batch steps over all n samples,
#: hours at 10,000 on one core). Linear in n by construction for both.
COST_CAP = {"svr": 1_000, "tape": 100}
METHODS = ("nnls", "svr", "tape", "scaden", "blue")
PEER_METHODS = {"tape", "scaden"}

#: Monaco flow-cytometry fine types summed into the 6 scored coarse types (truth renormalised over them).
MONACO_COARSE = {
    "B": ["B.Naive", "B.Memory"],
    "CD4 T": ["T.CD4.Naive", "T.CD4.Memory"],
    "CD8 T": ["T.CD8.Naive", "T.CD8.Memory"],
    "NK": ["NK"],
    "Monocyte": ["Monocytes.C", "Monocytes.NC.I"],
    "DC": ["mDCs", "pDCs"],
}
SCORED_PBMC = list(MONACO_COARSE)


# ----------------------------------------------------------------------------------------------
# Worker side (runs in a subprocess; peers' worker imports only numpy / pandas / anndata / TAPE)
# ----------------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _load_group(group_dir: Path) -> tuple[dict, "object", dict[str, pd.DataFrame]]:
    """A worker's inputs: the spec, the reference (cells x genes) and each bulk (samples x the same genes)."""
    import anndata as ad

    spec = json.loads((group_dir / "task.json").read_text())
    reference = ad.read_h5ad(group_dir / "reference.h5ad")
    genes = json.loads((group_dir / "genes.json").read_text())
    bulks = {
        b["name"]: pd.DataFrame(
            np.load(group_dir / f"{b['name']}_bulk.npy"),
            index=json.loads((group_dir / f"{b['name']}_samples.json").read_text()),
            columns=genes,
        )
        for b in spec["bulks"]
    }
    return spec, reference, bulks


def _tile(bulk: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` samples for the timing runs: the task's bulk repeated (content does not drive the cost)."""
    reps = int(np.ceil(n / len(bulk)))
    tiled = pd.concat([bulk] * reps, axis=0).iloc[:n]
    tiled.index = [f"t{i}" for i in range(n)]
    return tiled


def _cost_sizes(method: str, bulk_spec: dict) -> list[int]:
    return [n for n in bulk_spec["cost_sizes"] if n <= COST_CAP.get(method, n)]


def _time(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _markers(signature: pd.DataFrame, n_per_type: int) -> list[str]:
    """Top genes per type by log2((mean CPM + 1) / (max other types' mean CPM + 1)); union, in order."""
    log_sig = np.log2(signature + 1.0)
    chosen: list[str] = []
    for cell_type in signature.columns:
        others = log_sig.drop(columns=cell_type).max(axis=1)
        score = (log_sig[cell_type] - others).sort_values(ascending=False)
        chosen.extend(score.index[:n_per_type])
    return list(dict.fromkeys(chosen))


def _worker_signature(method: str, spec: dict, reference, bulks: dict[str, pd.DataFrame]) -> dict:
    """NNLS or nu-SVR on the reference's mean CPM profiles (marker genes); GEPs by closed-form E[Z|X]."""
    from blue_core.engine.baselines import closed_form_gep, nnls_proportions, signature_from_reference, svr_proportions

    fit = nnls_proportions if method == "nnls" else svr_proportions
    start = time.perf_counter()
    full = signature_from_reference(reference)
    markers = _markers(full, MARKERS_PER_TYPE)
    signature = full.loc[markers]
    out = {"train_s": time.perf_counter() - start, "bulks": {},
           "notes": f"{len(markers)} marker genes ({MARKERS_PER_TYPE}/type); GEP = closed-form E[Z|X] with these fractions"}
    for b in spec["bulks"]:
        bulk = bulks[b["name"]]
        props, infer_s = _time(fit, bulk, signature)
        res = {"proportions": props, "gep": None, "gep_genes": list(full.index), "gep_scale": "cpm",
               "infer_s": infer_s, "gep_s": None, "cost": {}}
        idx = b["gep_samples"]
        res["gep_samples"] = idx
        if idx:
            res["gep"], res["gep_s"] = _time(
                closed_form_gep, bulk.iloc[idx], props.iloc[idx], full, normalize="cpm"
            )
        for n in _cost_sizes(method, b):
            # Time to proportions AND GEPs for n samples (the GEP step is part of the method).
            start = time.perf_counter()
            tiled = _tile(bulk, n)
            p = fit(tiled, signature)
            closed_form_gep(tiled, p, signature=full, normalize="cpm")
            res["cost"][str(n)] = time.perf_counter() - start
        out["bulks"][b["name"]] = res
    return out


def _tape_transform(bulk: pd.DataFrame, genes: list[str]) -> np.ndarray:
    """TAPE's own test-data transform (ProcessInputData): log(x + 1), then MinMax per sample."""
    from sklearn.preprocessing import MinMaxScaler

    x = np.log(bulk.loc[:, genes].to_numpy(dtype=np.float64) + 1.0)
    return MinMaxScaler().fit_transform(x.T).T


def _worker_peer(method: str, spec: dict, reference, bulks: dict[str, pd.DataFrame]) -> dict:
    """TAPE / Scaden through scTAPE's own functions with their documented defaults.

    This is ``TAPE.deconvolution.Deconvolution`` / ``ScadenDeconvolution`` unrolled so that one trained
    network serves every bulk of the group, the timing runs and (TAPE) both the 'overall' proportions
    and the 'high-resolution' GEPs: simulation of 5,000 pseudo-bulks of 500 cells (sparse=True),
    ``ProcessInputData`` with the group's real bulk as test data (variance threshold 0.98, gene
    intersection, log + MinMax scaling), batch 128, 128 epochs, Adam lr 1e-4; TAPE adaptive stage
    (3 x 300 + 300 steps); Scaden = the m256 / m512 / m1024 ensemble of ``test_scaden``. Seeds are
    fixed (0) before the simulation and the training (scTAPE leaves the simulation unseeded).
    """
    import matplotlib

    matplotlib.use("Agg")
    import torch
    from TAPE.model import scaden
    from TAPE.simulation import generate_simulated_data
    from TAPE.train import predict, reproducibility, train_model
    from TAPE.utils import ProcessInputData

    torch.set_num_threads(spec["threads"])
    labels = reference.obs["cell_type"].astype(str).to_numpy()
    X = reference.X.toarray() if hasattr(reference.X, "toarray") else np.asarray(reference.X)
    sc_df = pd.DataFrame(X, index=labels, columns=list(reference.var_names))
    primary = bulks[spec["primary"]]

    start = time.perf_counter()
    reproducibility(SEED)
    smoke = spec.get("smoke", False)  # --quick: a smoke test of the pipeline, NOT the documented defaults
    simudata = generate_simulated_data(sc_data=sc_df, samplenum=500 if smoke else 5000, d_prior=None, sparse=True)
    train_x, train_y, test_x, genename, celltypes, samplename = ProcessInputData(
        simudata, primary, sep="\t", datatype="counts", variance_threshold=0.98, scaler="mms"
    )
    np.testing.assert_allclose(_tape_transform(primary.loc[samplename], genename), test_x, rtol=1e-6, atol=1e-9)
    celltypes = list(celltypes)
    reproducibility(SEED)
    if method == "tape":
        model = train_model(train_x, train_y, batch_size=128, epochs=2 if smoke else 128)
    else:
        architectures = {  # = TAPE.deconvolution.test_scaden
            "m256": ([256, 128, 64, 32], [0, 0, 0, 0]),
            "m512": ([512, 256, 128, 64], [0, 0.3, 0.2, 0.1]),
            "m1024": ([1024, 512, 256, 128], [0, 0.6, 0.3, 0.1]),
        }
        model = scaden(architectures, train_x, train_y, batch_size=128, epochs=2 if smoke else 128)
        model.train()
    out = {"train_s": time.perf_counter() - start, "bulks": {},
           "notes": f"{len(genename)} genes after scTAPE's variance filter and intersection"}

    def infer(bulk: pd.DataFrame) -> pd.DataFrame:
        x = _tape_transform(bulk, genename)
        if method == "tape":
            _, pred = predict(test_x=x, genename=genename, celltypes=celltypes, samplename=list(bulk.index),
                              model=model, model_name=None, adaptive=True, mode="overall")
            return pred
        return pd.DataFrame(model.predict(x), index=bulk.index, columns=celltypes)

    def high_resolution(bulk: pd.DataFrame) -> np.ndarray:
        x = _tape_transform(bulk, genename)
        sigm, _ = predict(test_x=x, genename=genename, celltypes=celltypes, samplename=list(bulk.index),
                          model=model, model_name=None, adaptive=True, mode="high-resolution")
        return np.stack([sigm[c].to_numpy() for c in celltypes], axis=1)  # (n, K, G)

    for b in spec["bulks"]:
        bulk = bulks[b["name"]]
        props, infer_s = _time(infer, bulk)
        res = {"proportions": props, "gep": None, "gep_genes": list(genename), "gep_scale": "tape_log_minmax",
               "infer_s": infer_s, "gep_s": None, "cost": {}}
        if method == "tape" and b["hr_samples"]:
            # High-resolution mode costs ~20-40 s per sample here: it runs on a subset of the GEP samples.
            res["gep"], res["gep_s"] = _time(high_resolution, bulk.iloc[b["hr_samples"]])
            res["gep_per_sample_s"] = res["gep_s"] / len(b["hr_samples"])
            res["gep_samples"] = b["hr_samples"]
        for n in _cost_sizes(method, b):
            _, res["cost"][str(n)] = _time(infer, _tile(bulk, n))
        out["bulks"][b["name"]] = res
    return out


def _worker_blue(method: str, spec: dict, reference, bulks: dict[str, pd.DataFrame]) -> dict:
    """BLUE: the pretrained model for real bulk; a model trained here on the training split for pseudo-bulk."""
    import torch

    import blue_core as bc

    torch.set_num_threads(spec["threads"])
    out = {"train_s": float("nan"), "bulks": {}, "notes": ""}
    trained = None
    notes = []
    for b in spec["bulks"]:
        bulk = bulks[b["name"]]
        if b.get("blue_model"):
            group_dir = Path(spec["dir"])
            bulk = pd.DataFrame(np.load(group_dir / f"{b['name']}_full.npy"), index=bulk.index,
                                columns=json.loads((group_dir / f"{b['name']}_full_genes.json").read_text()))
            start = time.perf_counter()
            try:
                model = bc.load_model(b["blue_model"])
            except bc.BlueModelError as err:
                out["bulks"][b["name"]] = {"failed": f"pretrained model '{b['blue_model']}' not available: {err}"}
                notes.append(f"{b['name']}: not run (no pretrained '{b['blue_model']}' model)")
                continue
            card = model.card if isinstance(model.card, dict) else {}
            load_s = time.perf_counter() - start
            card_s = card.get("training_time_s")
            refs = card.get("references", card.get("reference", card.get("provenance", "")))
            notes.append(f"{b['name']}: pretrained '{b['blue_model']}' (loaded in {load_s:.1f} s; its card: training "
                         f"{card_s} s, weights sha256 {str(card.get('weights_sha256'))[:12]}, cell types "
                         f"{list(model.cell_types)}, {len(model.input_genes)} input genes, "
                         f"reference {str(refs)[:200]})")
        else:
            if not spec.get("blue_train", True):
                continue
            if trained is None:
                extra = {"epochs": 2, "n_samples": 400} if spec.get("smoke") else {}
                trained, out["train_s"] = _time(
                    bc.train_model, reference, seed=SEED, threads=spec["threads"], name=f"bench-{spec['name']}",
                    **extra,
                )
                notes.append(f"{b['name']}: trained here with train_model defaults on the training split")
            model, card_s = trained, None
        result, infer_s = _time(bc.deconvolve, bulk, model)
        res = {"proportions": result.proportions, "gep": None, "gep_genes": list(result.genes), "gep_scale": "cpm",
               "infer_s": infer_s, "gep_s": None, "cost": {}, "pretrained_train_s": card_s}
        if b["gep_samples"]:
            res["gep"] = result.expression[b["gep_samples"]].astype(np.float64)
            res["gep_samples"] = b["gep_samples"]
        for n in _cost_sizes(method, b):
            _, res["cost"][str(n)] = _time(bc.deconvolve, _tile(bulk, n), model)
        out["bulks"][b["name"]] = res
    out["notes"] = "; ".join(notes)
    return out


def run_worker(method: str, group_dir: Path, out_dir: Path) -> None:
    """Entry point of a worker subprocess: run ``method`` on the group's bulks, write its outputs."""
    spec, reference, bulks = _load_group(group_dir)
    if method in ("nnls", "svr"):
        out = _worker_signature(method, spec, reference, bulks)
    elif method in PEER_METHODS:
        out = _worker_peer(method, spec, reference, bulks)
    elif method == "blue":
        out = _worker_blue(method, spec, reference, bulks)
    else:
        raise SystemExit(f"unknown method {method!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"train_s": out["train_s"], "notes": out["notes"], "peak_rss_mb": _peak_rss_mb(), "bulks": {}}
    for name, res in out["bulks"].items():
        if res.get("failed"):
            meta["bulks"][name] = res
            continue
        res["proportions"].rename_axis("sample").to_csv(out_dir / f"{name}_proportions.csv")
        if res["gep"] is not None:
            np.save(out_dir / f"{name}_gep.npy", np.asarray(res["gep"], dtype=np.float32))
        m = {k: v for k, v in res.items() if k not in ("proportions", "gep")}
        m["cell_types"] = [str(c) for c in res["proportions"].columns]
        meta["bulks"][name] = m
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1, default=float))


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
    python = PEERS_PYTHON if method in PEER_METHODS else Path(sys.executable)
    if not python.exists():
        log(f"  {method}: SKIPPED ({python} missing; run `bash bench/peers_setup.sh`)")
        return {"failed": f"{python.name} missing: run bash bench/peers_setup.sh"}
    threads = json.loads((group_dir / "task.json").read_text())["threads"]
    env = dict(os.environ, MPLBACKEND="Agg", TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", PYTHONHASHSEED="0", OMP_WAIT_POLICY="PASSIVE",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", method, "--task", str(group_dir),
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


def _coarse_name(name: str, targets: list[str]) -> str | None:
    """Map a model's cell-type name onto the scored vocabulary (``None``: not scored, e.g. MAIT)."""
    import re

    if name in targets:
        return name
    tokens = set(re.split(r"[\s_.\-+/()]+", name.lower()))
    low = name.lower()
    rules = [
        ("Platelet", "platelet" in low or "megakaryocyte" in low),
        ("Plasma", "plasma" in low),
        ("DC", "dc" in tokens or "pdc" in tokens or "mdc" in tokens or "cdc" in tokens or "dendritic" in low
         or any(t.endswith("dc") or t.startswith("cdc") for t in tokens)),
        ("CD4 T", "cd4" in low or "treg" in low),
        ("CD8 T", "cd8" in low),
        ("Monocyte", "mono" in low),
        ("NK", "nk" in tokens),
        ("B", "b" in tokens or "bcell" in tokens or low.startswith("b cell") or "b-cell" in low),
    ]
    for target, hit in rules:
        if hit and target in targets:
            return target
    return None


def to_vocabulary(pred: pd.DataFrame, targets: list[str]) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """Sum a method's predicted fractions into ``targets`` (types it lacks get 0); return the mapping."""
    mapping = {c: _coarse_name(str(c), targets) for c in pred.columns}
    out = pd.DataFrame(0.0, index=pred.index, columns=targets)
    for source, target in mapping.items():
        if target is not None:
            out[target] += pred[source].to_numpy(dtype=np.float64)
    return out, mapping


def score_proportions(truth: pd.DataFrame, pred: pd.DataFrame, *, renormalise: bool) -> dict:
    """Overall (flattened) and per-cell-type CCC, Pearson r and RMSE."""
    from blue_core.analysis.metrics import ccc, pearson, rmse

    types = list(truth.columns)
    p, mapping = to_vocabulary(pred, types)
    p = p.loc[truth.index]
    if renormalise:
        total = p.sum(axis=1).replace(0, np.nan)
        p = p.div(total, axis=0).fillna(1.0 / len(types))
    out = {"ccc": ccc(truth, p), "r": pearson(truth, p), "rmse": rmse(truth, p), "mapping": mapping, "pred": p}
    out["per_type"] = {
        t: {"ccc": ccc(truth[t], p[t]), "r": pearson(truth[t], p[t]), "rmse": rmse(truth[t], p[t])} for t in types
    }
    return out


def _log_cpm(gep: np.ndarray, gene_idx: np.ndarray, scale: str) -> np.ndarray:
    """GEP restricted to ``gene_idx`` on a log scale: log1p(CPM over those genes) or TAPE's own scale."""
    sub = gep[..., gene_idx].astype(np.float64)
    if scale == "cpm":
        total = sub.sum(axis=-1, keepdims=True)
        sub = np.divide(sub * 1e6, total, out=np.zeros_like(sub), where=total > 0)
        return np.log1p(sub)
    return sub  # TAPE: already log(x + 1) then MinMax-scaled per sample


def score_gep_pseudo(
    task: dict, outputs: dict[str, dict], genes_common: list[str], subset: list[int] | None = None
) -> dict[str, dict]:
    """GEP accuracy on held-out pseudo-bulk, log1p scale, genes expressed in the type (truth mean CPM >= 10).

    ``mean_r``: per-gene Pearson r across samples (the brief's metric), averaged over genes, then types.
    ``profile_r``: per-sample Pearson r across genes (the profile's shape), averaged over samples, then types.
    Only samples with >= 5 cells of the type count (smaller profiles are too noisy to be a truth).
    ``subset``: restrict to these sample indices (methods lacking any of them are skipped).
    """
    truth_types = list(task["truth"].columns)
    ref_pos = {g: i for i, g in enumerate(task["genes"])}
    t_idx = np.array([ref_pos[g] for g in genes_common])
    scores: dict[str, dict] = {}
    for method, out in outputs.items():
        if not out or out.get("failed") or out.get("gep") is None:
            continue
        have = list(out["gep_samples"])
        use = have if subset is None else [i for i in subset if i in set(have)]
        if subset is not None and len(use) < len(subset):
            continue
        rows = np.array([have.index(i) for i in use])
        pos = {g: i for i, g in enumerate(out["gep_genes"])}
        pred = _log_cpm(out["gep"][rows], np.array([pos[g] for g in genes_common]), out["gep_scale"])
        truth = _log_cpm(task["profiles"][use], t_idx, "cpm")
        cells = task["cells"][use]
        per_type = {}
        for k, cell_type in enumerate(truth_types):
            if cell_type not in out["cell_types"]:
                continue
            km = out["cell_types"].index(cell_type)
            present = cells[:, k] >= 5
            if present.sum() < 5:
                continue
            tk, pk = truth[present, k], pred[present, km]
            expressed = np.flatnonzero(np.expm1(tk).mean(axis=0) >= 10.0)
            rs = [np.corrcoef(tk[:, g], pk[:, g])[0, 1] for g in expressed if tk[:, g].std() > 0 and pk[:, g].std() > 0]
            ps = [np.corrcoef(tk[i, expressed], pk[i, expressed])[0, 1] for i in range(len(tk)) if pk[i, expressed].std() > 0]
            per_type[cell_type] = (float(np.mean(rs)) if rs else float("nan"), float(np.mean(ps)) if ps else float("nan"),
                                   int(present.sum()))
        gene_r = [v[0] for v in per_type.values() if np.isfinite(v[0])]
        prof_r = [v[1] for v in per_type.values() if np.isfinite(v[1])]
        scores[method] = {"mean_r": float(np.mean(gene_r)) if gene_r else float("nan"),
                          "profile_r": float(np.mean(prof_r)) if prof_r else float("nan"),
                          "per_type": per_type, "n_samples": len(use)}
    return scores


def abis_coarse(task: dict) -> pd.DataFrame:
    """ABIS sorted-cell profiles of the 6 coarse types: fine columns averaged, weighted by mean flow fraction."""
    abis, fine = task["abis"], task["fine_truth"]
    cols = {}
    for coarse, members in MONACO_COARSE.items():
        w = fine[members].mean(axis=0)
        cols[coarse] = (abis[members] * (w / w.sum())).sum(axis=1)
    return pd.DataFrame(cols)


def score_gep_abis(task: dict, outputs: dict[str, dict], genes_common: list[str], n_markers: int = 25) -> dict:
    """Pearson r (log scale, across a marker panel) of each predicted Monaco GEP with the ABIS profile."""
    sig = abis_coarse(task)
    panel_pool = [g for g in genes_common if g in sig.index]
    log_sig = np.log2(sig.loc[panel_pool] + 1.0)
    panel: list[str] = []
    for cell_type in sig.columns:
        spec = (log_sig[cell_type] - log_sig.drop(columns=cell_type).max(axis=1)).sort_values(ascending=False)
        panel.extend(spec.index[:n_markers])
    panel = list(dict.fromkeys(panel))
    truth = np.log1p(sig.loc[panel])
    scores: dict = {"panel": panel, "methods": {}}
    for method, out in outputs.items():
        if not out or out.get("failed") or out.get("gep") is None:
            continue
        pos = {g: i for i, g in enumerate(out["gep_genes"])}
        common_idx = np.array([pos[g] for g in genes_common])
        pred = _log_cpm(out["gep"], common_idx, out["gep_scale"])  # (n, K, G_common)
        cpos = {g: i for i, g in enumerate(genes_common)}
        pidx = np.array([cpos[g] for g in panel])
        per_type = {}
        for cell_type in sig.columns:
            members = [i for i, c in enumerate(out["cell_types"]) if _coarse_name(c, SCORED_PBMC) == cell_type]
            if not members:
                continue
            if len(members) == 1:
                profile = pred[:, members[0], :][:, pidx]
            else:  # several fine types of one coarse type: weight their profiles by predicted fractions
                w = out["proportions"].iloc[out["gep_samples"], members].to_numpy()
                w = w / np.clip(w.sum(axis=1, keepdims=True), 1e-12, None)
                profile = np.einsum("nk,nkg->ng", w, pred[:, members, :][:, :, pidx])
            rs = [np.corrcoef(profile[i], truth[cell_type].to_numpy())[0, 1] for i in range(profile.shape[0])
                  if profile[i].std() > 0]
            per_type[cell_type] = float(np.mean(rs)) if rs else float("nan")
        vals = [v for v in per_type.values() if np.isfinite(v)]
        scores["methods"][method] = {"mean_r": float(np.mean(vals)) if vals else float("nan"), "per_type": per_type}
    return scores


def nnls_sensitivity(group_dir: Path, bulk_name: str, score) -> list[tuple[str, int, float]]:
    """NNLS on the group's reference with 20 / 50 / 100 / 200 markers per type and with all genes.

    A sensitivity check of the baseline (the benchmark itself keeps the a-priori 50 per type);
    ``score(proportions) -> float``.
    """
    from blue_core.engine.baselines import nnls_proportions, signature_from_reference

    _, reference, bulks = _load_group(group_dir)
    full = signature_from_reference(reference)
    out = []
    for n in (20, 50, 100, 200, None):
        sig = full if n is None else full.loc[_markers(full, n)]
        out.append(("all genes" if n is None else f"{n} per type", len(sig), score(nnls_proportions(bulks[bulk_name], sig))))
    return out


def score_hba1c(task: dict, pred: pd.DataFrame) -> dict:
    from scipy.stats import pearsonr

    beta = [c for c in pred.columns if str(c).lower() == "beta"]
    if not beta:
        return {"r": float("nan"), "p": float("nan"), "n": 0}
    clinical = task["clinical"]
    b = pred.loc[clinical.index, beta[0]].to_numpy(dtype=np.float64)
    h = clinical["hba1c"].to_numpy(dtype=np.float64)
    keep = np.isfinite(b) & np.isfinite(h)
    res = pearsonr(b[keep], h[keep])
    return {"r": float(res.statistic), "p": float(res.pvalue), "n": int(keep.sum()), "beta": b, "hba1c": h}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

LABELS = {"blue": "BLUE", "nnls": "NNLS", "svr": "nu-SVR (CIBERSORT alg.)", "tape": "TAPE", "scaden": "Scaden"}
GEP_LABELS = {"blue": "BLUE", "nnls": "closed-form E[Z|X] (NNLS fractions)",
              "svr": "closed-form E[Z|X] (nu-SVR fractions)", "tape": "TAPE high-resolution"}
#: Earlier single runs on this machine (issue 6), scTAPE defaults, full references, 6 coarse types.
REFERENCE_POINTS = {("monaco", "tape"): 0.66, ("monaco", "scaden"): 0.80, ("monaco", "nnls"): -0.43,
                    ("fadista", "tape"): -0.56, ("fadista", "scaden"): -0.55}


def _f(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Rows of pre-formatted cells as markdown lines (through the benches' one table writer)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _tables import markdown_table

    return markdown_table(pd.DataFrame(rows, columns=header), number_format=None).splitlines() + [""]


def _task_results(outputs: dict, task: str, group: str, methods) -> dict[str, dict]:
    res = {}
    for m in methods:
        o = outputs[group].get(m)
        if o and not o.get("failed") and task in o["bulks"] and not o["bulks"][task].get("failed"):
            res[m] = o["bulks"][task]
    return res


def _common_genes(results: dict[str, dict], base: list[str]) -> list[str]:
    genes = list(base)
    for res in results.values():
        if res.get("gep") is not None:
            s = set(res["gep_genes"])
            genes = [g for g in genes if g in s]
    return genes


def _with_estimates(cost: dict[str, float]) -> dict[str, tuple[float, bool]]:
    """Measured times, plus linear extrapolations from the largest measured n (flag True = estimate)."""
    if not cost:
        return {}
    n_max = max(int(n) for n in cost)
    out = {n: (v, False) for n, v in cost.items()}
    for n in COST_SIZES:
        if n > n_max and len(cost) and str(n) not in out:
            out[str(n)] = (cost[str(n_max)] * n / n_max, True)
    return out


def _plots(scores: dict, tasks: dict, methods: list[str], outdir: Path, cost: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    # 1. Monaco predicted vs flow, one panel per method.
    mon = {m: s for m, s in scores["monaco"].items()}
    if mon:
        fig, axes = plt.subplots(1, len(mon), figsize=(3.2 * len(mon), 3.3), squeeze=False)
        truth = tasks["monaco"]["truth"]
        for ax, (m, s) in zip(axes[0], mon.items()):
            for t in truth.columns:
                ax.scatter(truth[t], s["pred"][t], s=14, label=t)
            ax.plot([0, 0.7], [0, 0.7], color="grey", lw=0.8)
            ax.set_title(f"{LABELS[m]}\nCCC {_f(s['ccc'])}", fontsize=9)
            ax.set_xlabel("flow cytometry fraction")
        axes[0][0].set_ylabel("predicted fraction")
        axes[0][-1].legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(outdir / "peers_monaco.png", dpi=110)
        plt.close(fig)
        files.append("peers_monaco.png")
    # 2. Fadista beta fraction vs HbA1c.
    fad = scores.get("fadista", {})
    if fad:
        fig, axes = plt.subplots(1, len(fad), figsize=(3.2 * len(fad), 3.1), squeeze=False)
        for ax, (m, s) in zip(axes[0], fad.items()):
            if s["n"]:
                ax.scatter(s["hba1c"], s["beta"], s=10)
            ax.set_title(f"{LABELS[m]}\nr {_f(s['r'])}, p {s['p']:.1g}", fontsize=9)
            ax.set_xlabel("HbA1c (%)")
        axes[0][0].set_ylabel("predicted beta-cell fraction")
        fig.tight_layout()
        fig.savefig(outdir / "peers_fadista.png", dpi=110)
        plt.close(fig)
        files.append("peers_fadista.png")
    # 3. Summary bars.
    panels = [("pbmc_pseudo", "ccc", "pbmc3k held-out CCC"), ("xin_pseudo", "ccc", "Xin held-out CCC"),
              ("monaco", "ccc", "Monaco vs flow CCC"), ("fadista", "r", "Fadista beta vs HbA1c r")]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.2))
    for ax, (task, key, title) in zip(axes, panels):
        ms = [m for m in methods if m in scores.get(task, {})]
        ax.bar([LABELS[m].split(" ")[0] for m in ms], [scores[task][m][key] for m in ms], color="tab:blue")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=30)
    fig.tight_layout()
    fig.savefig(outdir / "peers_summary.png", dpi=110)
    plt.close(fig)
    files.append("peers_summary.png")
    # 4. Cost: seconds vs samples.
    if cost:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for label, series in cost.items():
            xs = sorted(int(n) for n in series)
            ax.plot(xs, [series[str(n)] for n in xs], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("bulk samples")
        ax.set_ylabel("seconds (trained model -> results)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(outdir / "peers_cost.png", dpi=110)
        plt.close(fig)
        files.append("peers_cost.png")
    return files


def write_report(outputs: dict, tasks: dict, methods: list[str], args, outdir: Path, run_s: float) -> Path:
    import platform
    import subprocess as sp

    outdir.mkdir(parents=True, exist_ok=True)
    scores: dict[str, dict] = {}
    lines: list[str] = []
    try:
        commit = sp.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    cmd = "python bench/peers.py" + (" --quick" if args.quick else "") + (
        f" --threads {args.threads}" if args.threads != 1 else "")
    lines += [
        "# Peer benchmark: BLUE vs NNLS, nu-SVR, TAPE, Scaden",
        "",
        f"Written by `{cmd}` (commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"total {run_s / 60:.1f} min). Every number below comes from this run. Machine: {os.cpu_count()} CPU cores "
        f"shared with other jobs, {args.threads} torch/BLAS thread(s) per method, "
        f"{platform.python_version()}; peers from `bash bench/peers_setup.sh` (scTAPE 1.1.2). Single runs, seed 0: "
        "times on a shared machine vary by tens of percent.",
        "",
    ]
    if args.quick:
        lines += ["**QUICK RUN** (`--quick`): a smoke test. 30 held-out pseudo-bulks, GEPs on 3, timing at 100 "
                  "samples only, and TAPE / Scaden / BLUE trained for 2 epochs on a few hundred samples. "
                  "NOT the benchmark's numbers.", ""]
    lines += [
        "## Setup",
        "",
        "- Same reference and genes for every method. Group *pbmc*: pbmc3k (clustifyr; 10x v1, 1 donor) with the 7 "
        "`cell_type_coarse` labels (B, CD4 T, CD8 T, NK, Monocyte, DC, Platelet), split 80/20 by cell within each "
        "type (seed 0). The 80 % split is the reference of every method, for the held-out pseudo-bulk *and* for "
        f"Monaco; genes = pbmc3k genes also measured in Monaco ({tasks['monaco']['n_genes']}). Group *islet*: Xin "
        f"(scClassify; alpha, beta, delta, gamma), same split; genes = Xin genes also in Fadista "
        f"({tasks['fadista']['n_genes']}).",
        "- One trained network per method and group serves both of its bulks (TAPE/Scaden: scTAPE's pipeline with "
        "the real cohort as its test data, then the same genes and scaling applied to the pseudo-bulk).",
        "- Held-out pseudo-bulk (ours, independent of every method's simulator): Dirichlet(1) fractions, 500 cells "
        "drawn with replacement from the 20 % held-out cells, counts summed. Truth GEP of a type = CPM of the summed "
        "counts of its cells in that sample.",
        "- Monaco truth: flow-cytometry fine fractions summed to 6 coarse types "
        "(B = B.Naive + B.Memory; CD4 T = T.CD4.Naive + T.CD4.Memory; CD8 T = T.CD8.Naive + T.CD8.Memory; NK; "
        "Monocyte = Monocytes.C + Monocytes.NC.I; DC = mDCs + pDCs), renormalised to sum 1; MAIT, gamma-delta T, "
        "plasmablasts and low-density granulocytes are left out. Predictions are summed into the same 6 types "
        "(Platelet dropped) and renormalised.",
        "- NNLS / nu-SVR: signature = mean per-cell CPM of each type (`blue_core.engine.baselines.signature_from_reference`) "
        f"on the top {MARKERS_PER_TYPE} marker genes per type (log2 fold change over the highest other type, fixed a "
        "priori). nu-SVR follows CIBERSORT (standardised signature and mixture, nu in {0.25, 0.5, 0.75}, best by fit "
        "RMSE). Their GEPs: closed-form E[Z|X] (BayesPrism's expected expression) with their own fractions.",
        "- TAPE (overall adaptive mode for fractions, high-resolution mode for GEPs) and Scaden (3-model ensemble) run "
        "with scTAPE's documented defaults (5,000 simulated samples, variance threshold 0.98, MinMax scaling, "
        "128 epochs, batch 128).",
        "- BLUE: held-out pseudo-bulk with a model trained here by `blue_core.train_model` (defaults) on the same 80 % "
        "split; real cohorts with the shipped pretrained models (`pbmc`, `pancreas`), whose cell-type names are mapped "
        "onto the scored types (mapping below). The pretrained models' references differ from the peers' (see their "
        "cards): that is the product as shipped, not a same-reference comparison.",
        "",
    ]

    # --- Proportions ---
    lines += ["## Proportions", ""]
    prop_rows = []
    per_type_blocks = []
    for task, title in (("pbmc_pseudo", "pbmc3k held-out pseudo-bulk"), ("xin_pseudo", "Xin held-out pseudo-bulk"),
                        ("monaco", "Monaco PBMC vs flow cytometry (6 types, n = 12)")):
        group = tasks[task]["group"]
        res = _task_results(outputs, task, group, methods)
        scores[task] = {}
        for m, r in res.items():
            scores[task][m] = score_proportions(tasks[task]["truth"], r["proportions"], renormalise=task == "monaco")
        rows = [[LABELS[m], _f(s["ccc"]), _f(s["r"]), _f(s["rmse"], 3)] for m, s in scores[task].items()]
        prop_rows.append((title, rows))
        types = list(tasks[task]["truth"].columns)
        per_type_blocks.append((title, types, [[LABELS[m]] + [f"{_f(s['per_type'][t]['r'])} / {_f(s['per_type'][t]['rmse'], 3)}"
                                                               for t in types] for m, s in scores[task].items()]))
    for title, rows in prop_rows:
        lines += [f"**{title}**", ""]
        lines += _table(["method", "CCC", "Pearson r", "RMSE"], rows)
    lines += ["Per cell type (Pearson r / RMSE):", ""]
    for title, types, rows in per_type_blocks:
        lines += [f"*{title}*", ""] + _table(["method"] + types, rows)

    sens = nnls_sensitivity(WORK / "pbmc", "monaco",
                            lambda p: score_proportions(tasks["monaco"]["truth"], p, renormalise=True)["ccc"])
    lines += ["NNLS sensitivity to the signature genes (Monaco CCC, same reference; the tables above use 50 per "
              "type, fixed before looking):", ""]
    lines += _table(["signature genes", "n genes", "Monaco CCC"], [[a, b, _f(c)] for a, b, c in sens])

    # --- Fadista ---
    res = _task_results(outputs, "fadista", "islet", methods)
    scores["fadista"] = {m: score_hba1c(tasks["fadista"], r["proportions"]) for m, r in res.items()}
    lines += ["## Fadista islets: predicted beta-cell fraction vs HbA1c", "",
              "Pearson r across donors (a lower, i.e. more negative, r is the expected biology: beta-cell loss with "
              "rising HbA1c).", ""]
    lines += _table(["method", "r", "p", "n"],
                    [[LABELS[m], _f(s["r"]), f"{s['p']:.2g}" if np.isfinite(s["p"]) else "n/a", s["n"]]
                     for m, s in scores["fadista"].items()])

    # --- GEPs ---
    lines += ["## Cell-type expression (GEPs)", ""]
    gep_rows = []
    for task in ("pbmc_pseudo", "xin_pseudo"):
        res = _task_results(outputs, task, tasks[task]["group"], methods)
        common = _common_genes(res, tasks[task]["genes"])
        types = list(tasks[task]["truth"].columns)
        hr = tasks[task]["hr_samples"]
        g_all = score_gep_pseudo(tasks[task], res, common)
        g_hr = score_gep_pseudo(tasks[task], res, common, subset=hr)
        scores[f"gep_{task}"] = g_all
        scores[f"gep_{task}_hr"] = g_hr
        lines += [f"**{task}**: log1p GEP vs log1p truth on the genes expressed in the type (mean truth CPM >= 10) "
                  f"among the {len(common)} genes every GEP method outputs; samples with >= 5 cells of the type. "
                  "*gene r* = per-gene Pearson r across samples, averaged over genes then types (how well the "
                  "sample-to-sample variation of a type's expression is recovered); *profile r* = per-sample Pearson "
                  "r across genes, averaged (the profile's shape). "
                  f"First on the {len(hr)} samples TAPE's high-resolution mode was run on, then on all "
                  f"{len(tasks[task]['truth'])} held-out samples (methods that ran on all of them).", ""]
        lines += _table(["method", f"gene r ({len(hr)} samples)", f"profile r ({len(hr)})",
                         f"gene r (all {len(tasks[task]['truth'])})", "profile r (all)"] +
                        [f"gene r {t} (all)" for t in types],
                        [[GEP_LABELS.get(m, m), _f(s_["mean_r"]), _f(s_["profile_r"]),
                          _f(g_all.get(m, {}).get("mean_r")), _f(g_all.get(m, {}).get("profile_r"))] +
                         [_f(g_all.get(m, {}).get("per_type", {}).get(t, (np.nan,))[0]) for t in types]
                         for m, s_ in g_hr.items()])
    res = _task_results(outputs, "monaco", "pbmc", methods)
    common = _common_genes(res, [g for g in tasks["pbmc_pseudo"]["genes"]])
    ab = score_gep_abis(tasks["monaco"], res, common)
    scores["gep_abis"] = ab
    own = {m: score_gep_abis(tasks["monaco"], {m: r}, list(r["gep_genes"])) for m, r in res.items()
           if r.get("gep") is not None}
    lines += [f"**Monaco vs ABIS sorted-cell signature**: for each coarse type, Pearson r across a marker panel "
              "(the top 25 ABIS markers per type) between the log1p predicted GEP of each donor and the log1p ABIS "
              "profile of that type (ABIS fine columns averaged with weights = mean flow fraction), averaged over the "
              f"12 donors. *Common panel*: markers among the genes every GEP method outputs ({len(ab['panel'])} genes; "
              "BLUE's pretrained output genes overlap the pbmc3k genes only partly). *Own panel*: markers among the "
              "genes that method outputs. TAPE's GEPs are on its own log + MinMax scale (used as is).", ""]
    lines += _table(["method", "mean r (common panel)"] + SCORED_PBMC + ["mean r (own panel)", "own panel genes"],
                    [[GEP_LABELS.get(m, m), _f(s_["mean_r"])] + [_f(s_["per_type"].get(t)) for t in SCORED_PBMC] +
                     [_f(own[m]["methods"][m]["mean_r"]), len(own[m]["panel"])]
                     for m, s_ in ab["methods"].items()])

    # --- Cost ---
    lines += ["## Cost", "",
              "Training = simulation + fitting on the pbmc3k training split (NNLS/nu-SVR: building the signature). "
              "Inference = trained model to results for n pseudo-bulk samples (the 100 held-out samples tiled), "
              "wall-clock; TAPE's overall mode includes its adaptive stage; NNLS/nu-SVR include the closed-form GEPs; "
              "BLUE's `deconvolve` returns fractions and GEPs together. Peak RSS = `ru_maxrss` of the method's "
              "worker process (pbmc group: training, both bulks and all timing runs).", ""]
    cost_rows = []
    cost_series = {}
    for m in methods:
        o = outputs["pbmc"].get(m)
        if not o or o.get("failed"):
            continue
        pb = o["bulks"].get("pbmc_pseudo", {})
        c = pb.get("cost", {})
        c = _with_estimates(c)
        cost_series[LABELS[m]] = {n: v for n, (v, _) in c.items()}
        cost_rows.append([LABELS[m], _f(o["train_s"], 1)] +
                         [(f"~{c[str(n)][0]:.0f} (est.)" if c[str(n)][1] else _f(c[str(n)][0], 2)) if str(n) in c
                          else "n/a" for n in COST_SIZES] + [_f(o["peak_rss_mb"], 0)])
        if m == "tape" and pb.get("gep_per_sample_s"):
            per = pb["gep_per_sample_s"]
            n_hr = len(tasks["pbmc_pseudo"]["hr_samples"])
            cost_series["TAPE high-res (GEPs)"] = {str(n): per * n for n in COST_SIZES}
            cost_rows.append(["TAPE high-resolution (GEPs)", "(same)"] +
                             [f"~{per * n:.0f} (est.)" for n in COST_SIZES] + ["(same)"])
            scores["tape_hr_per_sample_s"] = (per, n_hr)
    lines += _table(["method", "training s", "100 samples s", "1,000 s", "10,000 s", "peak RSS MB"], cost_rows)
    if "tape_hr_per_sample_s" in scores:
        per, n_hr = scores["tape_hr_per_sample_s"]
        lines += [f"TAPE's high-resolution mode adapts the network to each sample separately; it was timed on the "
                  f"{n_hr} GEP samples ({per:.1f} s per sample) and the 100 / 1,000 / 10,000 figures are that per-sample "
                  "time times n (estimates, marked est.; the mode's cost is linear in n by construction).", ""]
    islet_rows = []
    for m in methods:
        o = outputs["islet"].get(m)
        if o and not o.get("failed"):
            islet_rows.append([LABELS[m], _f(o["train_s"], 1), _f(o["peak_rss_mb"], 0)])
    lines += ["Islet group (Xin reference):", ""] + _table(["method", "training s", "peak RSS MB"], islet_rows)

    # --- Notes ---
    lines += ["## Notes", ""]
    for group in ("pbmc", "islet"):
        for m in methods:
            o = outputs[group].get(m)
            if o is None:
                continue
            if o.get("failed"):
                lines.append(f"- {group} / {LABELS[m]}: FAILED or not run: {o['failed']}")
            else:
                if o.get("notes"):
                    lines.append(f"- {group} / {LABELS[m]}: {o['notes']}")
                for name, r in o["bulks"].items():
                    if r.get("failed"):
                        lines.append(f"- {name} / {LABELS[m]}: NOT RUN: {r['failed'][:300]}")
    for task in ("monaco", "pbmc_pseudo"):
        if "blue" in scores.get(task, {}):
            mapping = scores[task]["blue"]["mapping"]
            lines.append(f"- BLUE cell types -> scored types ({task}): " +
                         ", ".join(f"{k} -> {v if v else '(not scored)'}" for k, v in mapping.items()))
    lines.append("")
    files = _plots(scores, tasks, methods, outdir, cost_series)
    lines += ["## Plots", ""] + [f"![{f}]({f})" for f in files] + [""]
    lines += ["## Earlier figures (not from this run)", "",
              "Source: single runs of the same peers on this machine in issue 6 (scTAPE defaults, full references, "
              "6 coarse types), recorded in the first bench/results/peers.md; kept for comparison only.", ""]
    lines += _table(["cohort", "method", "earlier value"],
                    [[cohort, LABELS[m], _f(v)] for (cohort, m), v in REFERENCE_POINTS.items()])
    path = outdir / "peers.md"
    path.write_text("\n".join(lines))
    (outdir / "peers_scores.json").write_text(json.dumps(
        {t: {m: {k: v for k, v in s.items() if k in ("ccc", "r", "rmse", "p", "n", "mean_r")} for m, s in d.items()}
         for t, d in scores.items() if isinstance(d, dict) and t not in ("gep_abis",)}, indent=1, default=float))
    return path


PUBLISHED_HEADER = "## Published runs (issue 21)"


def published_section() -> list[str]:
    """The published peer predictions on SDY67 and Monaco (each tool's own run with its authors' reference, from
    the DISSECT paper's figure data) scored like the shipped BLUE ``pbmc`` model as a user runs it (its default:
    adapted to the cohort), all on the five groups B, CD4 T, CD8 T, NK, monocytes, renormalised."""
    import warnings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cohort_baseline import GROUPS, cohorts, five, published_rows, score

    from blue_core.engine.inference import deconvolve
    from blue_core.io import read_bulk
    from blue_core.engine.model import load_model

    model = load_model("pbmc")
    rows = []
    for cohort, (path, truth, suffix) in cohorts().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = deconvolve(read_bulk(path), model)
        adapted = "adapted" if result.input_report["adaptation"]["ran"] else "not adapted"
        rows.append({"cohort": cohort, "method": f"BLUE pbmc (shipped, {adapted})", "kind": "this repo",
                     **score(truth, five(result.proportions, {}))})
        rows += published_rows(cohort, truth, suffix)
    lines = [PUBLISHED_HEADER, "",
             "Written by `python bench/peers.py --published` (this section only). 'published run' = the tool's own run "
             "with its authors' reference (DISSECT paper figure data, Khatri et al. 2024, imsb-uke/deconvolution, MIT; "
             "`../shared/data/pbmc/published_peer_predictions/`), not a same-reference comparison like the tables "
             "above. Five groups, prediction and flow truth renormalised over them; CCC over all sample x type pairs; "
             "bias = mean(predicted - truth).", "",
             "| cohort | method | kind | n | CCC | " + " | ".join(f"bias {g}" for g in GROUPS) + " |",
             "|---" * (5 + len(GROUPS)) + "|"]
    for r in rows:
        lines.append(f"| {r['cohort']} | {r['method']} | {r['kind']} | {r['n']} | {r['ccc']:.2f} | "
                     + " | ".join(f"{r[f'bias {g}']:+.2f}" for g in GROUPS) + " |")
    return lines + [""]


def write_published(outdir: Path) -> Path:
    """Replace (or append) the published-runs section of peers.md, leaving the rest of the report as it was."""
    path = outdir / "peers.md"
    text = path.read_text() if path.is_file() else "# Peer benchmark\n"
    head, _, tail = text.partition(PUBLISHED_HEADER)
    rest = ""
    if tail:
        after = tail.split("\n## ", 1)
        rest = "## " + after[1] if len(after) > 1 else ""
    path.write_text(head.rstrip() + "\n\n" + "\n".join(published_section()) + ("\n" + rest if rest else ""))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--published", action="store_true",
                        help="only (re)write the published-runs section of peers.md (issue 21)")
    parser.add_argument("--quick", action="store_true", help="small test sets, timing at 100 samples only")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per method (default 1)")
    parser.add_argument("--no-blue-train", action="store_true",
                        help="do not train BLUE on the pseudo-bulk splits (BLUE then has no held-out rows)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.published:
        print(write_published(args.out).read_text().split(PUBLISHED_HEADER, 1)[1])
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
    log(f"wrote {path}")
    print(path.read_text())
    return 0


def _worker_main() -> int:
    parser = argparse.ArgumentParser(description="internal: one method on one reference group")
    parser.add_argument("--worker", required=True, choices=METHODS)
    parser.add_argument("--task", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    a = parser.parse_args()
    run_worker(a.worker, a.task, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main() if "--worker" in sys.argv else main())
