"""Speed and memory of the BLUE engine, side by side in one run.

1. Simulation: 10,000 pseudo-bulks x 500 cells from a >= 50,000-cell reference built by resampling the
   real pbmc3k cells (20 x 2,638 = 52,760 cells, drawn with replacement); wall time and peak RSS of the
   process (targets <= 30 s, <= 4 GB).
2. Training: the pbmc3k model (all 2,638 cells, default settings) on 2 CPU threads (target <= 10 min).
3. Inference: 1,000 bulk samples, proportions + all GEPs + fit scores (target <= 5 s).

Each stage runs in its own process so that its peak RSS is its own. Run from the repo root::

    python bench/engine_speed.py                     # writes bench/results/engine_speed.md

The machine is shared; the 1-minute load average at the start of each stage is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PBMC3K = REPO.parent / "shared" / "data" / "pbmc" / "pbmc3k_clustifyr.h5ad"
RESULTS = REPO / "bench" / "results"


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def stage_simulate(args) -> dict:
    import numpy as np

    from blue_core.io import read_reference
    from blue_core.engine.simulation import simulate

    ref = read_reference(PBMC3K)
    rng = np.random.default_rng(0)
    big = ref[rng.integers(0, ref.n_obs, size=20 * ref.n_obs)].copy()
    big.obs_names_make_unique()
    rss_before = _peak_rss_gb()
    t0 = time.perf_counter()
    pb = simulate(big, 10_000, cells_per_sample=500, seed=0)
    seconds = time.perf_counter() - t0
    return dict(seconds=seconds, peak_rss_gb=_peak_rss_gb(), rss_before_gb=rss_before, n_cells=big.n_obs,
                n_genes=big.n_vars, shape_bulk=list(pb.bulk.shape), shape_profiles=list(pb.profiles.shape))


def stage_train(args) -> dict:
    from blue_core.io import read_reference
    from blue_core.engine.model import save_model
    from blue_core.engine.training import train_model

    ref = read_reference(PBMC3K)
    t0 = time.perf_counter()
    model = train_model(ref, threads=2, seed=0, name="pbmc3k-speed")
    seconds = time.perf_counter() - t0
    save_model(model, args.model_dir, overwrite=True)
    size_mb = (Path(args.model_dir) / "model.safetensors").stat().st_size / 1e6
    return dict(seconds=seconds, peak_rss_gb=_peak_rss_gb(), epochs_run=model.card["training"]["epochs_run"],
                best_epoch=model.card["validation"]["best_epoch"], file_mb=size_mb,
                validation_ccc=model.card["validation"]["proportion_ccc"])


def stage_infer(args) -> dict:
    import torch

    from blue_core.engine.inference import deconvolve
    from blue_core.io import read_reference
    from blue_core.engine.model import load_model
    from blue_core.engine.simulation import simulate

    torch.set_num_threads(2)
    ref = read_reference(PBMC3K)
    bulk = simulate(ref, 1000, cells_per_sample=500, seed=11).bulk_frame()
    t0 = time.perf_counter()
    model = load_model(args.model_dir)
    load_s = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        result = deconvolve(bulk, model)
        seconds = time.perf_counter() - t0
    return dict(seconds=seconds, load_s=load_s, peak_rss_gb=_peak_rss_gb(),
                expression_shape=list(result.expression.shape))


STAGES = {"simulate": stage_simulate, "train": stage_train, "infer": stage_infer}


def _run_stage(name: str, model_dir: str) -> dict:
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--stage", name, "--model-dir", model_dir],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"stage {name} failed")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_avg_1min"] = load
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "engine_speed.md"))
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(STAGES[args.stage](args)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(Path(tmp) / "model")
        sim = _run_stage("simulate", model_dir)
        train = _run_stage("train", model_dir)
        infer = _run_stage("infer", model_dir)
    lines = [
        "# BLUE engine speed (this machine: 2 CPU cores, shared)",
        "",
        "Command: `python bench/engine_speed.py`",
        "",
        "| stage | what | time | peak RSS | target | load avg at start |",
        "|---|---|---|---|---|---|",
        f"| simulation | 10,000 pseudo-bulks x 500 cells from {sim['n_cells']:,} cells x {sim['n_genes']:,} genes "
        f"(bulk {sim['shape_bulk']}, profiles {sim['shape_profiles']}) | {sim['seconds']:.1f} s | "
        f"{sim['peak_rss_gb']:.2f} GB (process; {sim['rss_before_gb']:.2f} GB before simulate) | <= 30 s, <= 4 GB | "
        f"{sim['load_avg_1min']:.1f} |",
        f"| training | pbmc3k model, default settings, 2 threads ({train['epochs_run']} epochs, best "
        f"{train['best_epoch']}; weights {train['file_mb']:.1f} MB; validation CCC {train['validation_ccc']:.3f}) | "
        f"{train['seconds']:.0f} s ({train['seconds'] / 60:.1f} min) | {train['peak_rss_gb']:.2f} GB | <= 10 min | "
        f"{train['load_avg_1min']:.1f} |",
        f"| inference | 1,000 samples: proportions + GEPs {infer['expression_shape']} + fit (model load "
        f"{infer['load_s']:.2f} s not included) | {infer['seconds']:.2f} s | {infer['peak_rss_gb']:.2f} GB | <= 5 s | "
        f"{infer['load_avg_1min']:.1f} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
