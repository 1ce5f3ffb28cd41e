"""Peer benchmark, scoring: proportions against flow cytometry / held-out truth, GEPs against pseudo-bulk truth and
the ABIS signature, beta fraction against HbA1c (``bench/peers.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_common import MONACO_COARSE, SCORED_PBMC  # noqa: E402
from peers_worker import load_group, marker_genes  # noqa: E402


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

    _, reference, bulks = load_group(group_dir)
    full = signature_from_reference(reference)
    out = []
    for n in (20, 50, 100, 200, None):
        sig = full if n is None else full.loc[marker_genes(full, n)]
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
