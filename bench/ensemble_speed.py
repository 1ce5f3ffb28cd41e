"""Inference cost of ensembles: 1,000 bulk samples (proportions + every GEP + intervals), in one run.

Times ``deconvolve`` of 1,000 samples of Monaco-like input (Monaco's 12 profiles resampled with
multiplicative noise) with the shipped model and with a single member of it, side by side, best of 3
runs each, and writes ``bench/results/ensemble_speed.md``. Issue 10's target: <= 1 s for the ensemble.

    python bench/ensemble_speed.py [--model pbmc] [--samples 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table  # noqa: E402

import blue_core as bc  # noqa: E402
from blue_core.engine.model import BlueModel  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def _bulk(n: int) -> ad.AnnData:
    cohort = bc.load_sample("monaco_pbmc")
    rng = np.random.default_rng(0)
    base = np.asarray(cohort.bulk.X)
    rows = base[rng.integers(0, base.shape[0], n)] * rng.lognormal(0, 0.2, size=(n, base.shape[1]))
    return ad.AnnData(pd.DataFrame(rows, columns=cohort.bulk.var_names, index=[f"s{i}" for i in range(n)]))


def _time(bulk: ad.AnnData, model: BlueModel, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bc.deconvolve(bulk, model, batch_size=1000)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pbmc")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", default=str(RESULTS), help="folder for the result tables (default bench/results)")
    args = parser.parse_args(argv)
    RESULTS = Path(args.out)
    RESULTS.mkdir(parents=True, exist_ok=True)
    model = bc.load_model(args.model)
    single = BlueModel(model.name, model.cell_types, model.input_genes, model.output_genes, model.preprocessing,
                       model.network, {k: v for k, v in model.card.items() if k not in ("intervals", "n_members")})
    bulk = _bulk(args.samples)
    t_single, t_ens = _time(bulk, single), _time(bulk, model)
    load = os.getloadavg()[0]
    rows = [{"model": f"{args.model}, 1 member", "members": 1, "seconds": t_single, "ratio": 1.0},
            {"model": f"{args.model}, ensemble", "members": model.n_members, "seconds": t_ens, "ratio": t_ens / t_single}]
    lines = ["# Ensemble inference cost", "",
             f"Produced by `python bench/ensemble_speed.py --model {args.model} --samples {args.samples}`: "
             f"`deconvolve` of {args.samples:,} samples (proportions, all GEPs, fit score, intervals), best of 3, "
             f"{len(model.input_genes):,} input / {len(model.output_genes):,} output genes, {len(model.cell_types)} "
             f"cell types; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
             f"{load:.1f} at the end of the run.", "", markdown_table(pd.DataFrame(rows)), "",
             f"Target (issue 10): <= 1 s for the ensemble — {'met' if t_ens <= 1 else 'missed'} "
             f"({t_ens:.2f} s).", ""]
    (RESULTS / "ensemble_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
