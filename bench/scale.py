"""Archive scale (issues 14, 24): streaming vs in-memory deconvolution, side by side, on cohorts built from real bulk.

Cohorts of N samples are built by resampling the 12 Monaco PBMC samples (``sample_data/monaco_pbmc``) on the
pbmc model's genes, each with independent log-normal noise (SD 0.3) per gene and sample, written as an
ARCHS4-layout HDF5 file (genes x samples, float32). They are benchmark inputs, not results about biology.
Each case runs in its own process (peak RSS: the process's ``VmHWM``):

* ``memory``: the whole matrix read into memory, ``blue_core.deconvolve`` on it and the result folder written
  (``Deconvolution.write``: gzip-compressed GEPs);
* ``stream``: ``deconvolve_chunked`` (chunks of 5,000 samples), proportions + fit + intervals (+ GEPs), the same
  files;
* ``dask-2``: ``deconvolve_dask`` on a ``LocalCluster`` of 2 single-thread worker processes, the same files.

Every case runs the model's defaults (pbmc: cohort adaptation on, from at most 20,000 of the samples). The first
size given should be small enough for the in-memory path (it is run only at <= 20,000 samples): its throughput is
the baseline of every ratio in the same run.

    python bench/scale.py --sizes 20000 100000 1000000 [--out bench/results]

Writes ``scale.md`` and ``scale.json``: seconds, samples/s, peak RSS, and the throughput ratio to the in-memory path.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work" / "scale"


def build(n: int) -> Path:
    """The HDF5 cohort of ``n`` samples (built once, then reused)."""
    import h5py

    import blue_core as bc

    path = WORK / f"monaco_x{n}.h5"
    if path.is_file():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    model = bc.load_model("pbmc")
    genes = list(dict.fromkeys([*model.input_genes, *model.output_genes]))
    monaco = bc.load_sample("monaco_pbmc").bulk
    genes = [g for g in genes if g in set(monaco.var_names)]
    base = np.asarray(monaco[:, genes].X, dtype=np.float32)
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        data = f.create_dataset("data/expression", shape=(len(genes), n), dtype="float32", chunks=(len(genes), min(n, 10_000)))
        for start in range(0, n, 10_000):
            stop = min(start + 10_000, n)
            rows = base[rng.integers(0, len(base), stop - start)]
            data[:, start:stop] = (rows * rng.lognormal(0, 0.3, size=rows.shape).astype(np.float32)).T
        f["meta/genes/symbol"] = np.asarray(genes, dtype="S")
        f["meta/samples/geo_accession"] = np.asarray([f"S{i}" for i in range(n)], dtype="S")
    tmp.rename(path)
    return path


def case(kind: str, path: str, out: str, gep: bool) -> dict:
    """One measurement (run in a child process): the model's default settings (pbmc: cohort adaptation on), the
    result folder written (``proportions.csv``, ``fit.csv``, ``expression.h5ad`` with GEPs, ``provenance.json``)."""
    import warnings

    import blue_core as bc
    from blue_core.engine.chunk_core import model_genes
    from blue_core.engine.streaming import deconvolve_chunked, deconvolve_dask
    from blue_core.io.chunked import column_plan, open_bulk

    warnings.simplefilter("ignore")
    model = bc.load_model("pbmc")
    target = Path(out) / f"{kind}{'_gep' if gep else ''}"
    t0 = time.perf_counter()
    if kind == "memory":
        source = open_bulk(path)
        frame = column_plan(source, model_genes(model)).frame(source, 0, source.n_samples)
        result = bc.deconvolve(frame, model)
        result.write(target, overwrite=True, gep=gep)
        n = len(result.proportions)
    elif kind == "stream":
        n = deconvolve_chunked(path, model, out=target, chunk_size=5_000, gep=gep, overwrite=True).n_samples
    else:
        n = deconvolve_dask(path, model, out=target, n_workers=int(kind.split("-")[1]), chunk_size=5_000, gep=gep,
                            overwrite=True).n_samples
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "n": n, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (reset at exec; ``getrusage``'s ``ru_maxrss`` would carry the parent's peak
    at fork into the child, so every case after a large parent step would report the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _identical(n: int, scratch: Path) -> dict:
    """Whether the streamed and Dask folders hold the in-memory numbers: proportions + intervals, fit, GEPs."""
    from blue_core.engine.result import Deconvolution

    held = Deconvolution.read(scratch / "memory_gep")
    same = {}
    for kind in ("stream_gep", "dask-2_gep"):
        other = Deconvolution.read(scratch / kind)
        same[kind] = bool(np.allclose(other.proportions_table(), held.proportions_table(), rtol=1e-5, atol=1e-6)
                          and np.allclose(other.expression, held.expression, rtol=1e-4, atol=1e-3)
                          and np.allclose(other.fit["fit_r"], held.fit["fit_r"], atol=1e-5))
        same[kind + "_exact"] = bool(np.array_equal(other.proportions_table(), held.proportions_table()))
    return {"samples": n, "path": "identical (1 = stream / Dask equal the in-memory result)", "seconds": float("nan"),
            "n": n, "peak_rss_mb": float("nan"), "samples_per_s": float(all(same.values())), **same}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--case", nargs=4, metavar=("KIND", "PATH", "OUT", "GEP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        kind, path, out, gep = args.case
        print(json.dumps(case(kind, path, out, gep == "1")))
        return 0
    rows = []
    for n in args.sizes:
        path = build(n)
        scratch = WORK / f"out_{n}"
        scratch.mkdir(parents=True, exist_ok=True)
        kinds = [("memory", True), ("stream", True), ("dask-2", True)]  # the in-memory baseline of this run
        if n > 20_000:
            kinds = [("stream", True), ("stream", False), ("dask-2", True)]  # in memory: the point of streaming
        if n >= 500_000:
            kinds = [("stream", False)]  # proportions + fit + intervals (1M samples of GEPs would be 36 GB)
        for kind, gep in kinds:
            run = subprocess.run([sys.executable, __file__, "--case", kind, str(path), str(scratch), "1" if gep else "0"],
                                 capture_output=True, text=True, cwd=REPO)
            if run.returncode != 0:
                print(run.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"case {kind} at {n} failed")
            m = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append({"samples": n, "path": kind + (" + GEPs" if gep else ""), **m,
                         "samples_per_s": m["n"] / m["seconds"]})
            print(rows[-1], flush=True)
        if (scratch / "memory_gep").exists():
            rows.append(_identical(n, scratch))
    out_dir = Path(args.out)
    table = pd.DataFrame(rows)
    base = [r["samples_per_s"] for r in rows if r["path"] == "memory + GEPs"]  # this run's in-memory throughput
    table["throughput vs in-memory"] = [r["samples_per_s"] / base[-1] if base and "identical" not in r["path"]
                                        else float("nan") for r in rows]
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Archive scale: streaming vs in-memory (issues 14, 24)", "",
             "Produced by `python bench/scale.py --sizes N ...` (sizes measured: " + ", ".join(f"{n:,}" for n in sorted({r['samples'] for r in rows})) + ") on this 2-core machine "
             "(shared; each case in its own process). Inputs: Monaco PBMC resampled with noise on the pbmc model's "
             "genes (ARCHS4-layout HDF5); the model's defaults (pbmc: cohort adaptation on). `identical` = 1 when the "
             "streamed and Dask folders hold the in-memory numbers (proportions + intervals within 1e-6, GEPs within "
             "1e-4 relative, fit r within 1e-5; the `_exact` columns say whether proportions are bit-identical: Dask "
             "workers run torch on one thread, which sums in another order). `throughput vs in-memory` divides by the "
             "in-memory path's samples/s in the same run. Goals: 1M samples proportions + fit + intervals in <= 10 min "
             "and <= 2 GB; 100k samples with all GEPs. Dask rows: peak RSS is the client process only (the workers "
             "are separate processes), and 2 one-thread workers share this machine's 2 cores with the client; Dask "
             "is for many machines.", "",
             markdown_table(table, number_format="{:.3g}"), ""]
    write_report(out_dir, "scale", lines, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
