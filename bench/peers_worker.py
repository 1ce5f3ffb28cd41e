"""Peer benchmark, worker side: one method on one reference group, in its own subprocess (``bench/peers.py``).

Run by the driver as ``python bench/peers_worker.py --worker METHOD --task DIR --out DIR``; the peers' interpreter
(``.peers-venv``) runs it for TAPE and Scaden, so it imports only numpy / pandas / anndata and the method itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_common import COST_CAP, MARKERS_PER_TYPE, METHODS, PEER_METHODS, SEED, peak_rss_mb  # noqa: E402


def load_group(group_dir: Path) -> tuple[dict, "object", dict[str, pd.DataFrame]]:
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


def marker_genes(signature: pd.DataFrame, n_per_type: int) -> list[str]:
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
    markers = marker_genes(full, MARKERS_PER_TYPE)
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


def _worker_bayesprism(method: str, spec: dict, reference, bulks: dict[str, pd.DataFrame]) -> dict:
    """BayesPrism (Chu et al. 2022, Nat Cancer 3:505) through its Python port (PyPI ``bayesprism`` 0.1.0) with the
    port's defaults: the reference's cells as the prior (cell types as states), Gibbs chain 1,000 (burn-in 500,
    thinning 2, seed 123 -> 0 here), the reference update (MAP) and the final Gibbs run for the fractions; the
    GEPs are the initial posterior's per-type expected counts Z (BayesPrism's ``get_exp``), scaled to CPM per
    sample and type. No fitting to the bulk beyond BayesPrism's own; one run per bulk (no training)."""
    import torch
    from bayesprism import get_exp, get_fraction, new_prism, run_prism
    from bayesprism.models import GibbsControl
    from returns.maybe import Nothing, Some

    torch.set_num_threads(spec["threads"])
    labels = [str(c) for c in reference.obs["cell_type"]]
    X = reference.X.toarray() if hasattr(reference.X, "toarray") else np.asarray(reference.X)
    genes = [str(g) for g in reference.var_names]
    control = GibbsControl(seed=Some(SEED), num_threads=spec["threads"],
                           **({"chain_length": 100, "burn_in": 50} if spec.get("smoke") else {}))

    def run(bulk: pd.DataFrame, want_gep: bool):
        prism = new_prism(reference=X.astype(np.float32), cell_type_labels=labels, cell_state_labels=Nothing,
                          mixture=bulk.loc[:, genes].to_numpy(dtype=np.float32), gene_names=Some(tuple(genes)),
                          bulk_names=Some(tuple(str(s) for s in bulk.index))).unwrap()
        fitted = run_prism(prism, gibbs_control=Some(control)).unwrap()
        table = get_fraction(fitted, which_theta="final", state_or_type="type").unwrap().to_pandas()
        props = table.set_index("bulk_id")
        props.index = [str(s) for s in props.index]
        if not want_gep:
            return props, None, None
        blocks, kept = [], None
        for cell_type in props.columns:
            frame = get_exp(fitted, "type", cell_type).unwrap().to_pandas().set_index("bulk_id")
            kept = [str(g) for g in frame.columns]
            z = frame.to_numpy(dtype=np.float64)
            blocks.append(z / np.maximum(z.sum(axis=1, keepdims=True), 1e-12) * 1e6)
        return props, np.stack(blocks, axis=1), kept  # (n, K, G) CPM over the genes BayesPrism kept

    out = {"train_s": 0.0, "bulks": {}, "notes": f"{len(genes)} genes; Gibbs chain {control.chain_length}, "
                                                  f"burn-in {control.burn_in}; GEPs = get_exp Z scaled to CPM"}
    for b in spec["bulks"]:
        bulk = bulks[b["name"]]
        start = time.perf_counter()
        props, gep, kept = run(bulk, bool(b["gep_samples"]))
        wall = time.perf_counter() - start
        res = {"proportions": props, "gep": None, "gep_genes": kept or genes, "gep_scale": "cpm", "infer_s": wall,
               "gep_s": None, "cost": {}}
        if b["gep_samples"]:
            res["gep"], res["gep_samples"] = gep[b["gep_samples"]], b["gep_samples"]
        for n in _cost_sizes(method, b):
            _, res["cost"][str(n)] = _time(run, _tile(bulk, n), True)
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
    spec, reference, bulks = load_group(group_dir)
    if method in ("nnls", "svr"):
        out = _worker_signature(method, spec, reference, bulks)
    elif method in PEER_METHODS:
        out = _worker_peer(method, spec, reference, bulks)
    elif method == "blue":
        out = _worker_blue(method, spec, reference, bulks)
    elif method == "bayesprism":
        out = _worker_bayesprism(method, spec, reference, bulks)
    else:
        raise SystemExit(f"unknown method {method!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"train_s": out["train_s"], "notes": out["notes"], "peak_rss_mb": peak_rss_mb(), "bulks": {}}
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


def _worker_main() -> int:
    parser = argparse.ArgumentParser(description="internal: one method on one reference group")
    parser.add_argument("--worker", required=True, choices=METHODS)
    parser.add_argument("--task", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    a = parser.parse_args()
    run_worker(a.worker, a.task, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
