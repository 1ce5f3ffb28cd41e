"""The model store: pretrained models found by name.

Search path, first match wins: the directories in the environment variable ``BLUE_MODELS_DIR``
(``os.pathsep``-separated), then the installed models (package ``blue_pretrained``: the checkout's
``pretrained/``, found with :func:`~blue_core.io.resources.package_folder`). A model is a sub-directory
``<name>/`` holding ``model.json`` (+ ``model.safetensors``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd

from ..exceptions import BlueModelError
from ..io.resources import package_folder

__all__ = ["list_models", "find_model", "search_path"]

logger = logging.getLogger(__name__)

COLUMNS = ["name", "tissue", "cell_types", "n_input_genes", "n_output_genes", "description", "path"]


def search_path() -> list[Path]:
    """Directories searched for models, in order.

    Returns
    -------
    list of pathlib.Path
        Directories, first searched first.
    """
    paths = [Path(p) for p in os.environ.get("BLUE_MODELS_DIR", "").split(os.pathsep) if p]
    installed = package_folder("blue_pretrained")
    if installed is not None:
        paths.append(installed)
    return paths


def _model_dirs() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in search_path():
        if not root.is_dir():
            continue
        for card in sorted(root.glob("*/model.json")):
            found.setdefault(card.parent.name, card.parent)
    return found


def find_model(name: str) -> Path:
    """Directory of the model called ``name``.

    Returns
    -------
    pathlib.Path
        The model's directory.

    Raises
    ------
    BlueModelError
        No such model; the message lists the available ones.
    """
    found = _model_dirs()
    if name in found:
        return found[name]
    available = ", ".join(sorted(found)) or "none installed"
    raise BlueModelError(
        f"no model named {name!r} (available: {available}); pass a model name from `blue models` or the "
        "path of a model directory."
    )


def list_models() -> pd.DataFrame:
    """Table of the models in the store.

    Returns
    -------
    DataFrame
        One row per model, columns ``name, tissue, cell_types`` (comma-separated), ``n_input_genes,
        n_output_genes, description, path``. Empty (with these columns) when there is none. Unreadable
        cards are skipped with a log warning.
    """
    rows = []
    for name, directory in _model_dirs().items():
        try:
            card = json.loads((directory / "model.json").read_text(encoding="utf-8"))
            rows.append(
                dict(
                    name=name,
                    tissue=card.get("tissue") or "",
                    cell_types=", ".join(card.get("cell_types", [])),
                    n_input_genes=len(card.get("input_genes", [])),
                    n_output_genes=len(card.get("output_genes", [])),
                    description=card.get("description") or "",
                    path=str(directory),
                )
            )
        except (OSError, ValueError, AttributeError) as err:
            logger.warning("skipping model %s: unreadable model.json (%s)", directory, err)
    return pd.DataFrame(rows, columns=COLUMNS)
