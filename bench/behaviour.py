"""Behaviour check across a refactor: proportions and GEPs of every demo cohort with its model, hashed.

    python bench/behaviour.py --record before      # on the old tree
    python bench/behaviour.py --record after       # on the new tree; the table says whether they are identical

Writes bench/results/behaviour.json (one entry per label: per cohort, the SHA-256 of the proportions and of
the GEP tensor as float32 bytes, and their sums) and behaviour.md (the comparison of the labels).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np

import blue_core as bc

REPO = Path(__file__).resolve().parents[1]


def fingerprints() -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    names = list(bc.list_samples().index)
    for name in names:
        cohort = bc.load_sample(name)
        model_name = cohort.recommended_model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bc.deconvolve(cohort.bulk, bc.load_model(model_name))
        props = np.ascontiguousarray(res.proportions.to_numpy(dtype=np.float32))
        geps = np.ascontiguousarray(np.asarray(res.expression, dtype=np.float32))
        out[name] = {"model": model_name, "proportions_sha256": hashlib.sha256(props.tobytes()).hexdigest(),
                     "geps_sha256": hashlib.sha256(geps.tobytes()).hexdigest(),
                     "proportions_sum": float(props.sum(dtype=np.float64)), "geps_sum": float(geps.sum(dtype=np.float64)),
                     "shape": [list(props.shape), list(geps.shape)]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", required=True, help="label of this tree (e.g. before, after)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), help="output folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "behaviour.json"
    data = json.loads(store.read_text()) if store.is_file() else {}
    data[args.record] = fingerprints()
    store.write_text(json.dumps(data, indent=1) + "\n")
    labels = list(data)
    lines = ["# Behaviour across the refactor (issue 12)", "",
             "Produced by `python bench/behaviour.py --record <label>` on each tree; a cohort is identical when the "
             "SHA-256 of its proportions and of its GEP tensor (float32 bytes) agree.", "",
             "Cells: proportions hash / GEP hash (first 12 hex digits).", "",
             "The last two columns compare the two most recent labels (this refactor's before and after); the "
             "earlier columns are kept as the history (each change there was a model rebuilt, explained in its label).",
             "",
             "| cohort | model | " + " | ".join(labels) + " | proportions identical (last two) | GEPs identical (last two) |",
             "|---|---|" + "---|" * (len(labels) + 2)]
    for name in data[labels[0]]:
        props = [data[lab].get(name, {}).get("proportions_sha256", "-")[:12] for lab in labels]
        geps = [data[lab].get(name, {}).get("geps_sha256", "-")[:12] for lab in labels]
        cells = [f"{a} / {b}" for a, b in zip(props, geps)]
        lines.append(f"| {name} | {data[labels[0]][name]['model']} | " + " | ".join(cells)
                     + f" | {'yes' if len(set(props[-2:])) == 1 else 'NO'} | {'yes' if len(set(geps[-2:])) == 1 else 'NO'} |")
    (out / "behaviour.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
