"""Cached work of the app: models, readers, deconvolution, subtypes, survival, enrichment, training.

Streamlit's caches are keyed on the *content hash* of the inputs (never a file name), so a session only
ever gets back a result computed from byte-identical input. Every number comes from a ``blue_core`` call.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from blue_core.exceptions import BlueInputError

if TYPE_CHECKING:  # pragma: no cover
    from blue_core.analysis.subtype_validation import CohortValidation
    from blue_core.analysis.subtypes import SubtypeClustering

    from blue_core.engine.result import Deconvolution
    from blue_core.engine.model import BlueModel


__all__ = ["content_hash", "frame_hash", "pretrained_models", "load_pretrained", "model_key", "read_bulk_upload", "load_sample", "demo_cohorts", "read_demo_bulk", "run_deconvolution", "anndata_bytes", "model_zip_bytes", "result_key", "fit_subtypes", "fit_survival", "validate_on_cohorts", "gene_set_collections", "run_enrichment", "reference_obs", "read_reference_upload", "train_with_progress"]


def content_hash(data: bytes | str) -> str:
    """SHA-256 hex digest of bytes (or of a UTF-8 string): the cache key of an input."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def frame_hash(frame: pd.DataFrame | None) -> str:
    """Content hash of a DataFrame (values, index and columns)."""
    if frame is None:
        return "none"
    values = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    return content_hash(values + "|".join(map(str, frame.columns)).encode())


def pretrained_models() -> pd.DataFrame:
    """Table of pretrained models (``blue_core.list_models``); empty when none is installed."""
    from blue_core.engine.store import list_models

    return list_models()


@st.cache_resource(show_spinner="Loading model ...", max_entries=8)
def load_pretrained(name: str) -> Any:
    """A pretrained model by name, loaded once per server process (read-only, eval mode)."""
    from blue_core.engine.model import load_model

    model = load_model(name)
    network = getattr(model, "network", None)
    if network is not None and hasattr(network, "eval"):
        network.eval()
    return model


def model_key(model: BlueModel) -> str:
    """Identity of a model for caching: its name plus the sha256 of its weights from the card."""
    card = getattr(model, "card", {}) or {}
    digest = card.get("weights_sha256") or ""
    network = getattr(model, "network", None)
    if not digest and network is not None:  # a model trained in this session, not saved yet
        hasher = hashlib.sha256()
        for name, tensor in sorted(network.state_dict().items()):
            hasher.update(name.encode())
            hasher.update(tensor.detach().cpu().numpy().tobytes())
        digest = hasher.hexdigest()
    return f"{getattr(model, 'name', 'model')}:{digest}"


@st.cache_data(show_spinner="Reading the bulk file ...", max_entries=16, ttl=3600)
def _read_bulk_bytes(data_hash: str, filename: str, _data: bytes):
    """Parse uploaded bytes with ``read_bulk``; returns (AnnData, warning messages). Keyed on the content only:
    switching the model never re-parses (the model's gene decision is ``BlueModel.check_genes``, after)."""
    from blue_core.io import read_bulk

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bulk = read_bulk(io.BytesIO(_data), filename=filename)
    messages = _warning_messages(caught, bulk)
    return bulk, messages


def _warning_messages(caught: list, bulk: Any) -> list[str]:
    """Unique warning texts: those raised while reading plus those in the input report. A ``PoorFitWarning`` is left
    out: the trust verdict shows the same flags (one rule, ``calibration.flag_fit``) with their reasons."""
    from blue_core.exceptions import PoorFitWarning

    messages: list[str] = []
    for w in caught:
        if issubclass(w.category, PoorFitWarning):
            continue
        text = str(w.message)
        if text not in messages:
            messages.append(text)
    report = getattr(bulk, "uns", {}).get("blue_input", {}) or {}
    for text in report.get("warnings", []) or []:
        if str(text) not in messages:
            messages.append(str(text))
    return messages


_SUFFIXES = (".csv.gz", ".tsv.gz", ".txt.gz", ".tab.gz", ".gct.gz", ".h5ad.gz", ".csv", ".tsv", ".txt", ".tab",
             ".gct", ".xlsx", ".xlsm", ".xls", ".h5ad", ".gz")


def _neutral_name(filename: str | None) -> str:
    """The name cached readers see: ``upload`` + the file's extension (all the parser needs).

    Caches are shared by every session of the server, so nothing user-specific may enter them: two
    users uploading identical bytes under different names share one cached parse, and each sees only
    their own file name (:func:`_personal`).
    """
    lower = str(filename or "").lower()
    return "upload" + next((ext for ext in _SUFFIXES if lower.endswith(ext)), "")


def _personal(value: Any, neutral: str, real: str) -> Any:
    """``value`` (str, list or dict of them) with the neutral name replaced by this session's file name."""
    if isinstance(value, str):
        return value.replace(neutral, real)
    if isinstance(value, list):
        return [_personal(v, neutral, real) for v in value]
    if isinstance(value, dict):
        return {k: _personal(v, neutral, real) for k, v in value.items()}
    return value


def read_bulk_upload(data: bytes, filename: str) -> tuple[Any, list[str]]:
    """Read an uploaded bulk file (cached on its content, never on its name or the model).

    Raises
    ------
    BlueInputError
        The file cannot be used; the message names the problem and the fix.
    """
    neutral = _neutral_name(filename)
    try:
        bulk, messages = _read_bulk_bytes(content_hash(data), neutral, data)
    except BlueInputError as err:
        raise BlueInputError(_personal(str(err), neutral, filename)) from None
    # cache_data hands every caller its own copy: personalising it touches no other session
    bulk.uns["blue_input"] = _personal(dict(bulk.uns.get("blue_input", {})), neutral, filename)
    return bulk, _personal(list(messages), neutral, filename)


@st.cache_data(show_spinner="Loading the demo cohort ...", max_entries=8)
def load_sample(name: str) -> Any:
    """A bundled demo cohort (``blue_core.io.datasets.load_sample``), cached (a copy per caller)."""
    from blue_core.io.datasets import load_sample as _load

    return _load(name)


def demo_cohorts() -> pd.DataFrame:
    """Table of bundled demo cohorts (``blue_core.io.datasets.list_samples``); empty if none."""
    try:
        from blue_core.io.datasets import list_samples
    except ImportError:
        return pd.DataFrame(columns=["name", "title"])
    table = list_samples()
    return table.reset_index() if "name" not in table.columns else table


def read_demo_bulk(name: str) -> tuple[Any, list[str]]:
    """The demo cohort's bulk, read as an upload of its file would be."""
    from blue_core.io.datasets import sample_root

    data = (sample_root() / name / "bulk.csv.gz").read_bytes()
    return read_bulk_upload(data, f"{name}/bulk.csv.gz")


@st.cache_data(show_spinner=False, max_entries=16, ttl=3600)
def _deconvolve_cached(bulk_key: str, model_key_: str, adapt: bool | str, _bulk: Any, _model: BlueModel) -> Any:
    """``blue_core.deconvolve`` with a progress bar (and time left); the cache key is the content keys + ``adapt``."""
    import time

    from blue_core.engine.inference import deconvolve
    bar = st.progress(0.0, text="Deconvolving ...")
    start = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        left = "" if "left" in (message or "") else time_left(fraction, time.perf_counter() - start)
        bar.progress(fraction, text=f"{message or 'Deconvolving ...'}{f' — {left}' if left else ''}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = deconvolve(_bulk, _model, adapt=adapt, progress=progress)
    bar.progress(1.0, text="Deconvolution finished")
    return result, _warning_messages(caught, None)


def run_deconvolution(bulk: Any, bulk_key: str, model: BlueModel, *, adapt: bool | str | None = None
                      ) -> tuple[Any, list[str]]:
    """Deconvolve ``bulk`` with ``model`` (cached on the bulk's content key, the model's key and ``adapt``).

    ``adapt`` is ``deconvolve``'s (None: the model's default, ``adaptation.default_adapt``). Returns the ``Deconvolution`` and the texts of
    the warnings raised (e.g. ``PoorFitWarning``).
    """
    from blue_core.engine.adaptation import default_adapt

    adapt = default_adapt(model) if adapt is None else adapt
    result, messages = _deconvolve_cached(bulk_key, model_key(model), adapt, bulk, model)
    # The cached result may come from another session with identical data: its input report (file name
    # included) is replaced by this session's own (cache_data returned a private copy).
    own = dict(getattr(bulk, "uns", {}).get("blue_input", {}) or {})
    result.input_report = {**result.input_report, **{k: own[k] for k in ("source", "warnings") if k in own}}
    return result, messages


def anndata_bytes(adata: Any) -> bytes:
    """Bytes of an ``.h5ad`` file holding ``adata`` (for a download button)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "expression.h5ad"
        adata.write_h5ad(path)
        return path.read_bytes()


def model_zip_bytes(model: BlueModel) -> bytes:
    """A zip of the model's files (``model.safetensors`` + ``model.json``) written by ``save_model``."""
    from blue_core.engine.model import save_model

    from blue_core.io.files import check_model_name

    folder = check_model_name(getattr(model, "name", "model"))  # the name inside the zip; never a path
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "model"  # a folder this code chose, inside a fresh temporary folder
        save_model(model, directory)
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(directory.iterdir()):
                if file.is_file():
                    archive.write(file, arcname=f"{folder}/{file.name}")
    return buffer.getvalue()


def result_key() -> str:
    """Content key of the current result (bulk content + model), for caching what derives from it."""
    key = st.session_state.get("result_key")
    return "|".join(map(str, key)) if key else "none"


@st.cache_data(show_spinner=False, max_entries=16, ttl=3600)
def _fit_subtypes(key: str, features: str, cell_types: tuple[str, ...], k: int | None, _result: Deconvolution) -> Any:
    from blue_core.analysis.subtypes import SubtypeClustering

    bar = st.progress(0.0, text="Finding subtypes (consensus clustering) ...")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or "Clustering ...")

    clustering = SubtypeClustering(k=k, features=features, cell_types=list(cell_types)).fit(_result, progress=progress)
    bar.progress(1.0, text="Subtypes found")
    return clustering


def fit_subtypes(result: Deconvolution, *, features: str, cell_types: Sequence[str], k: int | None) -> Any:
    """``SubtypeClustering(k, features, cell_types).fit(result)``, cached per result and settings."""
    return _fit_subtypes(result_key(), features, tuple(cell_types), k, result)


def fit_survival(labels: pd.Series, clinical: pd.DataFrame, *, time_col: str, event_col: str) -> Any:
    """``SurvivalAnalysis(time_col, event_col).fit(labels, clinical)`` with a unit read from the column name."""
    from blue_core.analysis.clinical import guess_time_unit
    from blue_core.analysis.survival import SurvivalAnalysis

    return SurvivalAnalysis(time_col, event_col, time_unit=guess_time_unit(time_col)).fit(labels, clinical)


def validate_on_cohorts(names: list[str], model: BlueModel, subtypes: SubtypeClustering, *, discovery: Deconvolution,
                        survival: Any, time_col: str, event_col: str) -> list[CohortValidation]:
    """Cross-cohort validation in demo cohorts ``names``: each deconvolved with ``model`` (cached), then
    ``blue_core.analysis.subtype_validation.validate_subtypes`` with the discovery's best-prognosis subtype, and
    ``validate_across`` (Holm over the cohorts) -- the same rules as ``blue subtypes --validate``."""
    from blue_core.analysis.subtype_validation import validate_across, validate_subtypes, validation_genes
    from blue_core.analysis.survival import best_prognosis_group

    best = best_prognosis_group(survival)
    out = []
    for name in names:
        cohort = load_sample(name)
        clinical = getattr(cohort, "clinical", None)
        if clinical is None:
            raise BlueInputError(f"The cohort {name!r} has no clinical table, so survival cannot be validated on it.")
        bulk, _ = read_demo_bulk(name)
        other, _ = run_deconvolution(bulk, f"demo:{name}", model)
        validation_genes(discovery, other, features=subtypes.features, cell_types=subtypes.cell_types)
        out.append(validate_subtypes(subtypes, other, clinical=clinical, time_col=time_col, event_col=event_col,
                                     title=(getattr(cohort, "title", None) or name).split(":")[0],
                                     discovery_best=best))
    return validate_across(out)


def gene_set_collections() -> pd.DataFrame:
    """The shipped gene-set collections (``blue_core.analysis.enrichment.list_gene_set_collections``)."""
    from blue_core.analysis.enrichment import list_gene_set_collections

    return list_gene_set_collections()


@st.cache_data(show_spinner="Running gene-set enrichment ...", max_entries=32, ttl=3600)
def _enrich(key: str, labels_key: str, group: str, cell_type: str, collections: tuple[str, ...], method: str,
            include_inferred: bool, _result: Deconvolution, _labels: pd.Series) -> pd.DataFrame:
    from blue_core.analysis.enrichment import enrich

    return enrich(_result, _labels, group=group, cell_type=cell_type, gene_sets=list(collections), method=method,
                  include_inferred=include_inferred)


def run_enrichment(result: Deconvolution, labels: pd.Series, *, group: str, cell_type: str, collections: Sequence[str],
                   method: str, include_inferred: bool = False) -> pd.DataFrame:
    """``blue_core.enrich`` for one group and cell type, cached per result, labels and settings."""
    labels_key = content_hash(labels.astype(str).to_csv())
    return _enrich(result_key(), labels_key, str(group), str(cell_type), tuple(collections), method,
                   bool(include_inferred), result, labels)


@st.cache_data(show_spinner=False, max_entries=8, ttl=3600)
def _dependence(key: str, _result: Deconvolution, _reference: pd.DataFrame | None) -> pd.DataFrame:
    from blue_core.analysis.leakage import result_dependence

    return result_dependence(_result, reference=_reference)


def fraction_dependence(result: Deconvolution, model: Any) -> pd.DataFrame:
    """``blue_core.analysis.leakage.result_dependence`` of the current result (markers from the model's reference
    profiles when it has them), cached per result."""
    reference = getattr(model, "reference_profiles", None) if model is not None else None
    return _dependence(result_key(), result, None if reference is None else reference.T)


@st.cache_data(show_spinner="Reading the reference ...", max_entries=4, ttl=3600)
def _obs_table(data_hash: str, _data: bytes) -> pd.DataFrame:
    from blue_core.io import read_reference_obs

    return read_reference_obs(_data, filename="the uploaded file")


def reference_obs(data: bytes) -> pd.DataFrame:
    """The ``obs`` table (cell annotations) of an uploaded h5ad, to pick the label columns from."""
    return _obs_table(content_hash(data), data)


@st.cache_data(show_spinner="Checking the reference ...", max_entries=4, ttl=3600)
def _read_reference(data_hash: str, filename: str, cell_type_key: str, donor_key: str | None, _data: bytes
                    ) -> tuple[Any, list[str]]:
    from blue_core.io import read_reference

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reference = read_reference(io.BytesIO(_data), cell_type_key=cell_type_key, donor_key=donor_key,
                                   filename=filename)
    return reference, _warning_messages(caught, reference)


def read_reference_upload(data: bytes, filename: str, *, cell_type_key: str, donor_key: str | None
                          ) -> tuple[Any, list[str]]:
    """``read_reference`` on uploaded bytes (cached on content, never on the name): (reference, warnings)."""
    neutral = _neutral_name(filename)
    try:
        reference, messages = _read_reference(content_hash(data), neutral, cell_type_key, donor_key, data)
    except BlueInputError as err:
        raise BlueInputError(_personal(str(err), neutral, filename)) from None
    return reference, _personal(list(messages), neutral, filename)


def train_with_progress(reference: Any, **settings: Any) -> Any:
    """``blue_core.train_model`` with a live progress bar.

    Pressing any button while it runs (the page's Cancel) makes Streamlit stop this script at the
    next progress update, which ends the training.
    """
    import time

    from blue_core.engine.training import train_model

    bar = st.progress(0.0, text="Starting training ...")
    start = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        left = time_left(fraction, time.perf_counter() - start)
        bar.progress(fraction, text=f"{message or 'Training ...'}{f' — {left}' if left else ''}")

    model = train_model(reference, progress=progress, **settings)
    bar.progress(1.0, text=f"Training finished in {time.perf_counter() - start:.0f} s")
    return model


def time_left(fraction: float, elapsed_s: float) -> str:
    """A rough "about N min left" from the fraction done and the seconds spent ("" until 5 % and 5 s in).

    Returns
    -------
    str
        E.g. ``"about 3 min left"`` or ``"about 40 s left"``; empty while an estimate would be noise.
    """
    if fraction < 0.05 or elapsed_s < 5 or fraction >= 1:
        return ""
    remaining = elapsed_s * (1 - fraction) / fraction
    return f"about {remaining / 60:.0f} min left" if remaining >= 90 else f"about {max(remaining, 1):.0f} s left"


@st.cache_data(show_spinner="Checking which model fits these data ...", max_entries=16, ttl=3600)
def _recommend(bulk_key: str, _bulk: Any) -> pd.DataFrame:
    from blue_core.engine.model import load_installed
    from blue_core.analysis.trust import recommend_model

    return recommend_model(_bulk, load_installed(loader=load_pretrained))


def recommend(bulk: Any, bulk_key: str) -> pd.DataFrame:
    """``blue_core.analysis.trust.recommend_model`` over the installed models, cached on the data's content key."""
    return _recommend(bulk_key, bulk)


@st.cache_data(show_spinner=False, max_entries=16, ttl=3600)
def _assess(bulk_key: str, model_key_: str, _bulk: Any, _model: BlueModel, _result: Deconvolution) -> Any:
    from blue_core.analysis.trust import assess

    return assess(_bulk, _result, model=_model)


def trust_report(bulk: Any, bulk_key: str, model: BlueModel, result: Deconvolution) -> Any:
    """``blue_core.analysis.trust.assess`` of a result (cached on the data and model keys)."""
    return _assess(bulk_key, model_key(model), bulk, model, result)
