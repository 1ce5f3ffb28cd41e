"""Where the shipped package data live: the pretrained models, the demo cohorts, and ``blue_core/data``.

Both are installed with the wheel as packages (``blue_pretrained``, ``blue_sample_data``; in the checkout the
folders ``pretrained/`` and ``sample_data/``, mapped by ``pyproject.toml``) and found through
:mod:`importlib.resources` -- never by walking up from this file. Environment variables win:
``BLUE_MODELS_DIR`` (extra model folders, searched first) and ``BLUE_SAMPLE_DIR`` (the demo folder).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
from pathlib import Path

__all__ = ["package_folder", "package_data"]

logger = logging.getLogger(__name__)


def package_folder(package: str) -> Path | None:
    """The folder of an installed data package (``blue_pretrained``, ``blue_sample_data``, ``blue_app``).

    Returns
    -------
    pathlib.Path or None
        The package's directory on disk; None when the package is not installed (then only the
        environment variables point to data).
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        logger.warning("package %s is not installed; install BLUE studio with `pip install .`", package)
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    return Path(str(importlib.resources.files(package)))


def package_data(*parts: str) -> Path:
    """A file or folder under ``blue_core/data`` (gene tables, gene sets, calibration, marker and RNA-content tables).

    The one home of where the library's own data live, found through :mod:`importlib.resources` (so it holds
    in the checkout and in an installed wheel alike).

    Returns
    -------
    pathlib.Path
        ``blue_core/data/<parts...>``; not checked for existence.
    """
    return Path(str(importlib.resources.files("blue_core").joinpath("data", *parts)))
