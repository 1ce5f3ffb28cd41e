#!/usr/bin/env bash
# Installs the peer methods for bench/peers.py in their own virtual environment, .peers-venv/
# (git-ignored), so that their pins never touch the product's .venv.
#
#   bash bench/peers_setup.sh          # once, from the repository root
#   python bench/peers.py              # then the benchmark (from the product venv)
#
# Peers: TAPE and Scaden (PyTorch re-implementation), both from the PyPI package scTAPE
# (Chen et al. 2022, Nat Commun 13:6735; GPL-3.0). torch is installed FIRST so that pip takes
# the CPU wheel and does not pull a CUDA build as a dependency of scTAPE.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .peers-venv/bin/python ]; then
  "$PY" -m venv .peers-venv
fi
. .peers-venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q "scTAPE==1.1.2" "numpy>=1.26" "pandas>=2.1" "anndata>=0.10" "scikit-learn>=1.3" seaborn matplotlib tqdm
python -c "import TAPE, torch; from TAPE.deconvolution import Deconvolution, ScadenDeconvolution; print('scTAPE ready, torch', torch.__version__)"

# BayesPrism (Chu et al. 2022, Nat Cancer 3:505), the Python port on PyPI (bayesprism 0.1.0, MIT): its own venv,
# .bayesprism-venv/ (git-ignored), since it pins polars / pydantic / returns.
deactivate 2>/dev/null || true
if [ ! -x .bayesprism-venv/bin/python ]; then
  "$PY" -m venv .bayesprism-venv
fi
. .bayesprism-venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q "bayesprism==0.1.0" "numpy>=1.26" "pandas>=2.1" "anndata>=0.10" pyarrow
python -c "import bayesprism, torch; print('bayesprism ready, torch', torch.__version__)"
