"""Peer benchmark, shared settings: paths, seeds, methods and the scored Monaco groups (``bench/peers.py``)."""

from __future__ import annotations

import os
import resource
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


SHARED = Path(os.environ.get("BLUE_SHARED_DATA", REPO.parent / "shared" / "data"))


WORK = REPO / "bench" / "_work" / "peers"


RESULTS = REPO / "bench" / "results"


PEERS_PYTHON = REPO / ".peers-venv" / "bin" / "python"


#: BayesPrism's Python port (PyPI ``bayesprism`` 0.1.0, MIT) has pins of its own (polars, pydantic, returns):
#: its own venv, from ``bash bench/peers_setup.sh``.
BAYESPRISM_PYTHON = REPO / ".bayesprism-venv" / "bin" / "python"


SEED = 0


CELLS_PER_SAMPLE = 500


MARKERS_PER_TYPE = 50  # signature genes per cell type for NNLS / nu-SVR (fixed a priori)


COST_SIZES = (100, 1_000, 10_000)


#: Largest n actually timed per method; larger n are extrapolated linearly from it and marked "est."
#: (nu-SVR fits every sample apart; TAPE's adaptive stage runs 1,800 full-batch steps over all n samples,
#: hours at 10,000 on one core). Linear in n by construction for both.
COST_CAP = {"svr": 1_000, "tape": 100, "bayesprism": 100}


METHODS = ("nnls", "svr", "tape", "scaden", "bayesprism", "blue")


#: The default run leaves BayesPrism out: its port needs hours per cohort here (``bench/bayesprism_cost.py``);
#: ``--methods ...,bayesprism`` runs it anyway.
DEFAULT_METHODS = tuple(m for m in METHODS if m != "bayesprism")


PEER_METHODS = {"tape", "scaden"}


#: Monaco flow-cytometry fine types summed into the 6 scored coarse types (truth renormalised over them).
MONACO_COARSE = {
    "B": ["B.Naive", "B.Memory"],
    "CD4 T": ["T.CD4.Naive", "T.CD4.Memory"],
    "CD8 T": ["T.CD8.Naive", "T.CD8.Memory"],
    "NK": ["NK"],
    "Monocyte": ["Monocytes.C", "Monocytes.NC.I"],
    "DC": ["mDCs", "pDCs"],
}


SCORED_PBMC = list(MONACO_COARSE)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
