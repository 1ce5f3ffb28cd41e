"""Accuracy against model size and training cost for BlueNet widths and depths (chooses the defaults).

Every configuration is trained with the same budget (pbmc3k, 80 % of the cells, ``--n-samples``
pseudo-bulks, at most ``--epochs`` epochs, same seed) and scored on pseudo-bulk from the held-out 20 %
with ``bench/pbmc3k_holdout.py``'s ``evaluate``. Run from the repo root::

    nice -n 10 python bench/architecture.py          # writes bench/results/architecture.md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from pbmc3k_holdout import PBMC3K, RESULTS, evaluate, markdown_table  # noqa: E402

from blue_core.io import read_reference  # noqa: E402
from blue_core.engine.reference_cells import split_reference  # noqa: E402
from blue_core.engine.training import train_model  # noqa: E402

CONFIGS = {
    "tiny": dict(hidden=128, signal_length=64, base_channels=4, depth=2),
    "small": dict(hidden=256, signal_length=128, base_channels=8, depth=2),
    "medium": dict(hidden=256, signal_length=128, base_channels=8, depth=3),
    "wide-mlp": dict(hidden=512, n_layers=3, signal_length=128, base_channels=8, depth=3),
    "large": dict(hidden=256, signal_length=256, base_channels=16, depth=3),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--n-samples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--out", default=str(RESULTS / "architecture.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    reference = read_reference(PBMC3K)
    train_ref, test_ref, _ = split_reference(reference, fractions=(0.8, 0.2, 0.0), seed=0)
    rows = []
    for name in args.configs:
        t0 = time.perf_counter()
        model = train_model(train_ref, n_samples=args.n_samples, epochs=args.epochs, threads=args.threads,
                            network=CONFIGS[name], seed=0, name=name)
        seconds = time.perf_counter() - t0
        s = evaluate(model, train_ref, test_ref, n_test=args.n_test)["summary"]
        n_params = sum(p.numel() for p in model.network.parameters())
        rows.append(dict(config=name, network=json.dumps(CONFIGS[name]), params=f"{n_params:,}",
                         file_mb=4 * n_params / 1e6, train_s=seconds, epochs=model.card["training"]["epochs_run"],
                         proportion_ccc=s["proportion_ccc"], gep_marker_r=s["gep_marker_r_median"],
                         gep_rmse=s["gep_rmse_mean"], baseline_rmse=s["baseline_rmse_mean"],
                         infer_1000_s=s["inference_s"] * 1000 / args.n_test))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    text = "\n".join([
        "# BlueNet architecture: accuracy vs size (pbmc3k held-out pseudo-bulk)",
        "",
        f"Command: `nice -n 10 python bench/architecture.py {' '.join(argv or sys.argv[1:])}`".rstrip() + "  ",
        f"Same budget for every configuration: {args.n_samples} training pseudo-bulks, <= {args.epochs} GEP-branch "
        "epochs (`epochs` column; the proportion branch uses train_model's default <= 100 epochs with early stopping), "
        f"{args.threads} torch thread(s), seed 0; {args.n_test} test pseudo-bulks from held-out cells. "
        "Input/output genes as train_model's defaults. train_s depends on the load of the shared machine.",
        "",
        "The two branches share no parameters and are optimised separately, so a default may combine the "
        "proportion MLP of one row with the U-Net of another.",
        "",
        markdown_table(table),
        "",
    ])
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
