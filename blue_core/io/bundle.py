"""An analysis bundle: one zip that holds what a session found, and opens again later.

Layout (all plain files; no pickle)::

    manifest.json                 inputs' names, model (name, tissue, weights sha256), sizes, BLUE version
    deconvolution/proportions.csv, fit.csv, expression.h5ad, provenance.json   (Deconvolution.write)
    trust.csv                     per-sample verdict and reasons (blue_core.analysis.trust), when given
    subtypes.csv                  sample -> subtype, when subtypes were found
    survival.json, kaplan_meier.html, kaplan_meier.png            when survival was compared

:func:`write_bundle` makes it (the app's "Download this analysis"); :func:`read_bundle` opens one again with the
same safety as a model zip (:func:`~blue_core.io.files.extract_zip`).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._version import __version__
from ..exceptions import BlueInputError
from .files import restore_formulas, write_csv
from .strictjson import dumps

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.result import Deconvolution
    from ..engine.model import BlueModel

__all__ = ["write_bundle", "read_bundle", "AnalysisBundle", "MAX_BUNDLE_BYTES"]

logger = logging.getLogger(__name__)

#: Largest bundle :func:`read_bundle` opens (bytes, compressed and inflated).
MAX_BUNDLE_BYTES = 500 * 1024 * 1024
_RESULT_FILES = ("deconvolution/proportions.csv", "deconvolution/fit.csv", "deconvolution/expression.h5ad")
_OPTIONAL = ("deconvolution/provenance.json", "trust.csv", "subtypes.csv", "survival.json", "kaplan_meier.html", "kaplan_meier.png")


@dataclass
class AnalysisBundle:
    """A bundle opened again.

    Attributes
    ----------
    result
        The :class:`~blue_core.engine.result.Deconvolution`.
    manifest
        ``manifest.json`` (inputs, model, version).
    subtypes
        Sample -> subtype, or None.
    trust
        The per-sample trust table, or None.
    """

    result: Any
    manifest: dict[str, Any]
    subtypes: pd.Series | None = None
    trust: pd.DataFrame | None = None


def write_bundle(result: Deconvolution, *, model: BlueModel, inputs: dict[str, Any] | None = None,
                 trust: Any = None, subtypes: pd.Series | None = None, survival: Any = None) -> bytes:
    """The zip of one analysis (layout in the module docstring).

    Parameters
    ----------
    result
        The deconvolution.
    model
        The model it was made with (its name, tissue and weights' sha256 go into the manifest).
    inputs
        What the user loaded, by name (e.g. ``{"bulk": "my_cohort.csv", "clinical": "clinical.xlsx"}``).
    trust
        A :class:`~blue_core.analysis.trust.TrustReport` (its table is written as ``trust.csv``).
    subtypes
        Sample -> subtype labels.
    survival
        A fitted :class:`~blue_core.analysis.survival.SurvivalAnalysis` (JSON summary and Kaplan-Meier figures).

    Returns
    -------
    bytes
        The zip archive.
    """
    card = getattr(model, "card", {}) or {}
    manifest = {
        "blue_version": __version__, "inputs": dict(inputs or {}),
        "model": {"name": getattr(model, "name", None), "tissue": card.get("tissue"),
                  "weights_sha256": card.get("weights_sha256")},
        "n_samples": int(result.proportions.shape[0]), "cell_types": [str(c) for c in result.cell_types],
        "files": [*_RESULT_FILES, "deconvolution/provenance.json"],
        "adaptation": (result.input_report or {}).get("adaptation"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (trust.annotate(result) if trust is not None else result).write(root / "deconvolution")
        if trust is not None:
            write_csv(trust.table, root / "trust.csv")
            manifest["files"].append("trust.csv")
            manifest["trust_summary"] = trust.summary
        if subtypes is not None:
            write_csv(subtypes.rename_axis("sample").rename("subtype").to_frame(), root / "subtypes.csv")
            manifest["files"].append("subtypes.csv")
        if survival is not None:
            from ..plotting import save_km

            (root / "survival.json").write_text(dumps(survival.to_dict()), encoding="utf-8")
            save_km(survival, root, name="kaplan_meier")
            manifest["files"] += ["survival.json", "kaplan_meier.html", "kaplan_meier.png"]
        (root / "manifest.json").write_text(dumps(manifest), encoding="utf-8")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in ["manifest.json", *manifest["files"]]:
                archive.write(root / name, arcname=f"blue_analysis/{name}")
    return buffer.getvalue()


def read_bundle(data: bytes, *, max_bytes: int = MAX_BUNDLE_BYTES) -> AnalysisBundle:
    """Open a bundle written by :func:`write_bundle` (safely: :func:`~blue_core.io.files.extract_zip`).

    Returns
    -------
    AnalysisBundle
        The deconvolution, the manifest and, when present, subtypes and the trust table.

    Raises
    ------
    BlueInputError
        Not a bundle, unsafe or missing members, or files that do not read.
    """
    from .files import extract_zip
    from ..engine.result import Deconvolution

    hint = "Upload the zip that 'Download this analysis' produced."
    allowed = {"manifest.json", *_RESULT_FILES, *_OPTIONAL}
    with tempfile.TemporaryDirectory() as tmp:
        written = extract_zip(data, tmp, allowed=allowed, max_bytes=max_bytes, what="analysis zip", hint=hint)
        missing = sorted({"manifest.json", *_RESULT_FILES} - set(written))
        if missing:
            raise BlueInputError(f"the analysis zip lacks {missing}. {hint}")
        try:
            manifest = json.loads(written["manifest.json"].read_text(encoding="utf-8"))
            result = Deconvolution.read(Path(tmp) / "deconvolution")
            subtypes = trust = None
            if "subtypes.csv" in written:
                table = restore_formulas(pd.read_csv(written["subtypes.csv"], index_col=0))
                subtypes = table["subtype"].astype(str).rename("subtype")
                subtypes.index = subtypes.index.astype(str)
            if "trust.csv" in written:
                trust = restore_formulas(pd.read_csv(written["trust.csv"], index_col=0))
        except (OSError, ValueError, KeyError) as err:
            raise BlueInputError(f"the analysis zip does not read ({type(err).__name__}: {err}). {hint}") from None
    return AnalysisBundle(result=result, manifest=manifest, subtypes=subtypes, trust=trust)
