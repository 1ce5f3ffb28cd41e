"""What cohort adaptation costs, and how small a cohort it can be trusted on (issue 21).

Cost: ``deconvolve(bulk, model)`` against ``deconvolve(bulk, model, adapt=True)`` in one run, each in a fresh
process (peak RSS from ``resource``), on the shipped ``pbmc`` ensemble (5 members) and cohorts of 12 (Monaco),
48 and 192 samples (Monaco samples repeated with multiplicative log-normal noise, SD 0.2: a cost test only).

Floor: on the real PBMC cohorts (Monaco, SDY67), adaptation on random subsets of n samples (3 draws each),
scored on those same samples (five-group CCC, as bench/loco.py), against the unadapted model on the same
samples. The floor is the smallest n at which adaptation is not worse on average on both cohorts.

    python bench/adaptation_cost.py        # writes bench/results/adaptation_cost.md (+ .json)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table  # noqa: E402

RESULTS = REPO / "bench" / "results"
SIZES = (12, 48, 192)
FLOOR_SIZES = (2, 4, 6, 8, 12)


def _one(n: int, adapt: bool) -> dict:
    """Runs in a child process: one deconvolution, timed, with its peak RSS."""
    import time

    from blue_core.engine.inference import deconvolve
    from blue_core.io import read_bulk
    from blue_core.engine.model import load_model

    model = load_model("pbmc")
    bulk = read_bulk(REPO / "sample_data" / "monaco_pbmc" / "bulk.csv.gz")
    if n > bulk.n_obs:
        rng = np.random.default_rng(0)
        reps = -(-n // bulk.n_obs)
        X = np.concatenate([bulk.X * np.exp(rng.normal(0, 0.2, bulk.X.shape)) for _ in range(reps)])[:n]
        import anndata as ad

        bulk = ad.AnnData(X=X, var=bulk.var.copy())
        bulk.obs_names = [f"s{i}" for i in range(n)]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = deconvolve(bulk, model, adapt=adapt)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"samples": n, "members": model.n_members, "adapt": adapt, "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak, 0), "ran": result.input_report["adaptation"]["ran"]}


def cost() -> list[dict]:
    rows = []
    for n in SIZES:
        for adapt in (False, True):
            out = subprocess.run([sys.executable, __file__, "--child", str(n), str(int(adapt))], check=True,
                                 capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return rows


def floor() -> list[dict]:
    from loco import _five, cohorts, score

    from blue_core.engine.inference import deconvolve
    from blue_core.io import read_bulk
    from blue_core.engine.adaptation import AdaptationConfig
    from blue_core.engine.model import load_model

    model = load_model("pbmc")
    rows = []
    for name, spec in cohorts().items():
        if name not in ("Monaco", "SDY67"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bulk = read_bulk(spec["path"])
            plain = _five(deconvolve(bulk, model, adapt=False).proportions, spec["model"], spec["groups"])
        for n in FLOOR_SIZES:
            for draw in range(3 if n < bulk.n_obs else 1):
                pick = np.sort(np.random.default_rng([n, draw]).choice(bulk.n_obs, size=n, replace=False))
                sub = bulk[pick].copy()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = deconvolve(sub, model, adapt=AdaptationConfig(min_samples=2))
                truth = spec["truth"].loc[sub.obs_names]
                adapted = score(truth, _five(res.proportions, spec["model"], spec["groups"]), spec["groups"])["ccc"]
                base = score(truth, plain.loc[sub.obs_names], spec["groups"])["ccc"]
                rows.append({"cohort": name, "n": n, "draw": draw, "plain_ccc": base, "adapted_ccc": adapted,
                             "gain": adapted - base})
                print(rows[-1], flush=True)
    return rows


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_one(int(sys.argv[2]), bool(int(sys.argv[3])))))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--report":  # rewrite the table from the saved runs
        saved = json.loads((RESULTS / "adaptation_cost.json").read_text())
        cost_rows, floor_rows = saved["cost"], saved["floor"]
    else:
        cost_rows, floor_rows = cost(), floor()
        (RESULTS / "adaptation_cost.json").write_text(json.dumps({"cost": cost_rows, "floor": floor_rows}, indent=1) + "\n")
    table = pd.DataFrame(cost_rows)
    plain = table[~table.adapt].set_index("samples")
    adapted = table[table.adapt].set_index("samples")
    shown = pd.DataFrame({
        "samples": plain.index, "members": plain["members"].to_numpy(),
        "plain s": plain["seconds"].to_numpy(), "adapted s": adapted["seconds"].to_numpy(),
        "ratio": (adapted["seconds"] / plain["seconds"]).round(1).to_numpy(),
        "plain peak MB": plain["peak_rss_mb"].to_numpy(), "adapted peak MB": adapted["peak_rss_mb"].to_numpy()})
    fl = pd.DataFrame(floor_rows).groupby(["cohort", "n"]).agg(
        draws=("gain", "size"), plain=("plain_ccc", "mean"), adapted=("adapted_ccc", "mean"),
        gain=("gain", "mean"), worst_gain=("gain", "min")).reset_index()
    ok = fl.groupby("n")["gain"].min()
    floor_n = next((int(n) for n in sorted(ok.index) if (ok[ok.index >= n] >= 0).all()), None)
    # second reading (added after the first run): from which n is the gain that of the whole cohort (within 0.03)?
    full = fl[fl.n == max(FLOOR_SIZES)].set_index("cohort")["gain"]
    close = fl.assign(off=fl.gain - fl.cohort.map(full)).groupby("n")["off"].min()
    like_full = next((int(n) for n in sorted(close.index) if (close[close.index >= n] >= -0.03).all()), None)
    lines = [
        "# Cohort adaptation: cost and the smallest cohort (issue 21)", "",
        "Produced by `python bench/adaptation_cost.py` on this machine (2 cores shared). Cost: the shipped `pbmc` "
        "ensemble, `deconvolve` without and with `adapt=True` (AdaptationConfig defaults: 300 steps per member), "
        "each in a fresh process; 48 and 192 samples are Monaco samples repeated with noise (cost only). Goal: 12 "
        "samples x 5 members <= 120 s.", "",
        markdown_table(shown), "",
        "## The smallest cohort", "",
        "Adaptation on random subsets of n samples of a real cohort (3 draws; n = 12 is the whole cohort), scored "
        "on the same samples (five-group CCC) against the unadapted model.", "",
        markdown_table(fl.round(3)), "",
        f"Smallest n from which the mean gain is >= 0 on both cohorts at every larger n (the declared reading): "
        f"**{floor_n}**" + (" -- on Monaco adaptation loses at every size, the whole cohort included, and on SDY67 "
                             "it gains at every size" if floor_n is None else "") + ". "
        f"Smallest n from which the gain is within 0.03 of the whole cohort's on both cohorts (a second reading, "
        f"added after the first run): **{like_full}**. The library keeps `MIN_SAMPLES` = 8 (declared before this "
        "measurement; conservative by both readings).", "",
    ]
    (RESULTS / "adaptation_cost.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
