"""Which training choices make the blood model robust to the single-cell -> bulk shift?

Measured on data that is NOT the evaluation truth: pseudo-bulk built from the Kang 2018 PBMCs
(another 10x dataset, control and interferon-stimulated, cell labels derived as documented in
``bench/validate.py::label_kang``). Each variant is the shipped ``pretrained/pbmc/recipe.toml`` with one
change; all are trained by ``blue_core.engine.recipes.train_recipe``, exactly as the shipped model. Monaco flow cytometry is not used.

    python bench/robustness.py            # writes bench/results/robustness.md
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from blue_core.analysis.metrics import ccc  # noqa: E402
from blue_core.engine.recipe_data import build_reference, data_root, read_recipe
from blue_core.engine.recipes import train_recipe  # noqa: E402
from _tables import markdown_table, results_folder  # noqa: E402
from validate import kang_pseudo_bulk, label_kang, quiet_deconvolve  # noqa: E402

PBMC3K = {"name": "pbmc3k", "path": "pbmc/pbmc3k_clustifyr.h5ad", "cell_type_key": "cell_type",
          "label_map": {"CD4 T naive": "CD4 T", "CD4 T memory": "CD4 T", "CD14 monocyte": "Monocyte",
                        "CD16 monocyte": "Monocyte", "DC": "mDC"}}


def variants(base: dict) -> dict[str, dict]:
    out = {"shipped (sample noise SD 0.5)": copy.deepcopy(base)}
    v = copy.deepcopy(base)
    v["simulation"]["sample_noise_sd"] = 0.0
    out["no multiplicative noise"] = v
    v = copy.deepcopy(base)
    v["simulation"]["gene_noise_sd"] = 1.0
    out["+ shared per-gene noise SD 1.0"] = v
    v = copy.deepcopy(base)
    v["references"].append(PBMC3K)
    out["+ pbmc3k reference (shared genes only)"] = v
    return out


def main(argv: list[str] | None = None) -> int:


    out_dir = results_folder(argv, __doc__.splitlines()[0] if __doc__ else None)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    base = read_recipe(REPO_ROOT / "pretrained" / "pbmc" / "recipe.toml")
    kang = label_kang(data_root(base), build_reference(base))
    rows = []
    for name, recipe in variants(base).items():
        t0 = time.perf_counter()
        model = train_recipe(recipe)
        scores = {}
        for condition in ("ctrl", "stim"):
            bulk, truth = kang_pseudo_bulk(kang, model, condition)
            est = quiet_deconvolve(bulk, model).proportions[model.cell_types]
            scores[condition] = ccc(truth.to_numpy(), est.to_numpy())
        rows.append({"variant": name, "input genes": len(model.input_genes),
                     "Kang ctrl CCC": scores["ctrl"], "Kang stim CCC": scores["stim"],
                     "held-out-cell pseudo-bulk CCC": model.card["validation"]["proportion_ccc"],
                     "seconds": round(time.perf_counter() - t0)})
        print(rows[-1], flush=True)
    table = markdown_table(pd.DataFrame(rows), number_format="{:.3g}")
    text = "\n".join(["# Robustness choices for the blood model (proxy data, not the evaluation truth)", "",
                      "Command: `python bench/robustness.py`. Kang labels are derived (see bench/validate.py).", "",
                      table, ""])
    (out_dir / "robustness.md").write_text(text)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
