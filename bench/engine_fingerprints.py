"""Behaviour check across a refactor, engine side: simulation in every mode and one small training run, hashed.

    python bench/engine_fingerprints.py --record before      # on the old tree (PYTHONPATH=<old tree>)
    python bench/engine_fingerprints.py --record after       # on the new tree; the table says whether they agree

Synthetic reference (tests/_engine_data.synthetic_reference: 300 cells, 80 genes, 3 types, 4 donors), so the check
is about the code, not the data. ``bench/behaviour.py`` does the same for deconvolution of the demo cohorts.
Writes bench/results/engine_fingerprints.json and .md. Training weights depend on the CPU threads that run the float
sums: compare runs made with the same number of threads (``OMP_NUM_THREADS=1`` is the default of this script).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _hash(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def fingerprints(tree: Path) -> dict[str, str]:
    sys.path.insert(0, str(tree / "tests"))
    from _engine_data import synthetic_reference

    import blue_core as bc

    warnings.simplefilter("ignore")
    ref = synthetic_reference(n_cells=300, n_genes=80, n_types=3, seed=2)
    ref.obs["donor"] = [f"d{i % 4}" for i in range(ref.n_obs)]
    types = sorted(ref.obs["cell_type"].astype(str).unique())
    cases = {
        "plain": {}, "noise": dict(gene_noise_sd=0.3, sample_noise_sd=0.1, noise_batch_size=7),
        "states": dict(state_key="donor", state_alpha=0.3, single_state_fraction=0.2),
        "subclusters": dict(n_states=2), "rna_content": dict(rna_content={t: 1.0 + i for i, t in enumerate(types)}),
        "group_share": dict(group_share={"cell_types": types[:1], "fraction": 0.5, "range": [0.4, 0.8],
                                         "other_range": [0, 0.1]}),
        "platform_factors": dict(type_gene_factors=np.linspace(0.5, 1.5, 3 * 80).reshape(3, 80)),
        "output_genes": dict(output_genes=list(ref.var_names[:20])),
    }
    out = {}
    for name, kwargs in cases.items():
        pb = bc.simulate(ref, 2500, cells_per_sample=50, seed=3, **kwargs)
        out[f"simulate {name}"] = _hash(pb.bulk, pb.proportions.to_numpy(), pb.profiles)
    model = bc.train_model(ref, name="fp", n_samples=300, epochs=2, proportion_epochs=2, seed=1)
    out["train_model weights"] = _hash(*[v.numpy() for v in model.networks[0].state_dict().values()])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", required=True, help="label of this tree (e.g. before, after)")
    parser.add_argument("--tree", default=None, help="tree whose tests/ helpers to use (default: the imported blue_core's)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), help="output folder")
    args = parser.parse_args(argv)
    import blue_core

    tree = Path(args.tree) if args.tree else Path(blue_core.__file__).resolve().parents[1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "engine_fingerprints.json"
    data = json.loads(store.read_text()) if store.is_file() else {}
    data[args.record] = fingerprints(tree)
    store.write_text(json.dumps(data, indent=1) + "\n")
    labels = list(data)
    lines = ["# Engine behaviour across a refactor: simulation and training fingerprints", "",
             "Produced by `python bench/engine_fingerprints.py --record <label>` on each tree (one thread). Cells: the "
             "first 16 hex digits of the SHA-256 of the outputs (simulation: bulk, proportions, profiles; training: "
             "the weights).", "",
             "| case | " + " | ".join(labels) + " | identical (last two) |", "|---|" + "---|" * (len(labels) + 1)]
    for case in data[labels[-1]]:
        cells = [data[lab].get(case, "-") for lab in labels]
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {'yes' if len(set(cells[-2:])) == 1 else 'NO'} |")
    (out / "engine_fingerprints.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
