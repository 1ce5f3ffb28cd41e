"""View helpers for the Streamlit app: session state, cached loaders and figure builders.

No science lives here: every number shown by the app comes from a ``blue_core`` call
(``read_bulk``, ``deconvolve``, ``compare_groups``, ``SubtypeClustering``, ...). This module
only keeps per-user state, caches results by the *content hash* of their inputs, turns
tables into plotly figures and offers downloads.

Streamlit is imported lazily so that ``import blue_core`` never needs it.

State (one helper, :func:`init_state`): every page calls it first. A user's data lives only
in that user's ``st.session_state``; the caches are keyed on content hashes, so a session
only ever gets back a result computed from byte-identical input.
"""

from __future__ import annotations

import functools
import hashlib
import html
import io
import logging
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .exceptions import BlueInputError, BlueModelError

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

logger = logging.getLogger(__name__)

__all__ = [
    "init_state",
    "reset_results",
    "content_hash",
    "TRAINED_PREFIX",
]

#: Session-state keys of models trained in this session start with this prefix.
TRAINED_PREFIX = "trained:"

#: Default of every session-state key the app uses. Factories, so that no mutable
#: object is ever shared between sessions.
_STATE_DEFAULTS: dict[str, Callable[[], Any]] = {
    "model_name": lambda: None,  # pretrained name, or TRAINED_PREFIX + name
    "trained_models": dict,  # name -> BlueModel, trained on the Train page in this session
    "bulk_source": lambda: None,  # "upload" | "demo"
    "bulk_bytes": lambda: None,  # raw bytes of the uploaded bulk file
    "bulk_filename": lambda: None,
    "bulk_label": lambda: None,  # what the user sees: file name or demo title
    "demo_name": lambda: None,  # name of the loaded demo cohort
    "clinical": lambda: None,  # DataFrame, index = sample
    "clinical_label": lambda: None,
    "truth": lambda: None,  # DataFrame of measured proportions (demo with flow truth)
    "cohort_info": lambda: None,  # the demo cohort's card (cohort.json)
    "result": lambda: None,  # Deconvolution of the current bulk with the current model
    "result_key": lambda: None,  # (bulk key, model key) the result was computed from
    "subtypes": lambda: None,  # fitted SubtypeClustering
    "subtypes_key": lambda: None,
    "validation": lambda: None,  # dict: cross-cohort validation outputs
    "demo_notice": lambda: None,  # message when a demo's recommended model is missing
    "auto_run": lambda: False,  # a demo was just loaded: deconvolve it without another click
    "run_warnings": list,  # warnings raised by the last deconvolution
    "clinical_error": lambda: None,  # message of an unusable clinical upload
    "ref_bytes": lambda: None,  # Train page: uploaded single-cell reference (h5ad bytes)
    "ref_filename": lambda: None,
    "last_trained": lambda: None,  # name of the last model trained in this session
}

#: Clinical columns guessed as survival time / event, in order of preference.
TIME_COLUMNS = ("os_days", "os_months", "os_time", "time", "efs_days", "os_months_cbioportal")
EVENT_COLUMNS = ("os_event", "os_status", "event", "status", "efs_event", "os_status_cbioportal")


def _st() -> Any:
    import streamlit as st

    return st


def _lazy_cache(kind: str, **options: Any) -> Callable[[Callable], Callable]:
    """Like ``st.cache_data(**options)`` / ``st.cache_resource``, applied at the first call.

    Keeps ``import blue_core.ui`` free of a Streamlit import; the wrapped function is
    Streamlit's process-wide cache, keyed on the (hashable) arguments, never per-module data.
    """

    def decorate(func: Callable) -> Callable:
        wrapped: Callable | None = None

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal wrapped
            if wrapped is None:
                wrapped = getattr(_st(), kind)(**options)(func)
            return wrapped(*args, **kwargs)

        return call

    return decorate


# --------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------
def init_state() -> None:
    """Create every session-state key the app uses (only where missing)."""
    st = _st()
    for key, factory in _STATE_DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = factory()


def reset_results() -> None:
    """Forget results computed from the previous data or model (call when either changes)."""
    st = _st()
    for key in ("result", "result_key", "subtypes", "subtypes_key", "validation"):
        st.session_state[key] = None


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


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------
def pretrained_models() -> pd.DataFrame:
    """Table of pretrained models (``blue_core.list_models``); empty when none is installed."""
    from .store import list_models

    return list_models()


@_lazy_cache("cache_resource", show_spinner="Loading model ...", max_entries=8)
def load_pretrained(name: str) -> Any:
    """A pretrained model by name, loaded once per server process (read-only, eval mode)."""
    from .model import load_model

    model = load_model(name)
    network = getattr(model, "network", None)
    if network is not None and hasattr(network, "eval"):
        network.eval()
    return model


def model_options() -> list[str]:
    """Keys the model picker offers: pretrained names, then this session's trained models."""
    st = _st()
    names: list[str] = []
    try:
        table = pretrained_models()
        names = [str(n) for n in table["name"]] if len(table) else []
    except ImportError:  # model store not installed
        names = []
    names += [TRAINED_PREFIX + n for n in st.session_state.get("trained_models", {})]
    return names


def model_label(key: str) -> str:
    """Human label of a model key: name, tissue and number of cell types."""
    if key.startswith(TRAINED_PREFIX):
        return f"{key[len(TRAINED_PREFIX):]} (trained in this session)"
    try:
        table = pretrained_models()
        row = table[table["name"].astype(str) == key]
    except (ImportError, KeyError):
        return key
    if row.empty:
        return key
    tissue, cell_types = row["tissue"].iloc[0], row["cell_types"].iloc[0]
    n = len(cell_types) if isinstance(cell_types, (list, tuple)) else len(str(cell_types).split(","))
    return f"{key} — {tissue}, {n} cell types" if tissue else f"{key} — {n} cell types"


def get_model(key: str | None) -> Any | None:
    """The model behind a picker key: a session-trained model or a cached pretrained one."""
    if not key:
        return None
    st = _st()
    if key.startswith(TRAINED_PREFIX):
        return st.session_state["trained_models"].get(key[len(TRAINED_PREFIX):])
    return load_pretrained(key)


def model_key(model: Any) -> str:
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


def current_model() -> Any | None:
    """The model picked on the Data & model page (None when none is picked or it cannot load)."""
    st = _st()
    try:
        return get_model(st.session_state.get("model_name"))
    except (BlueModelError, FileNotFoundError, ImportError):
        return None


# --------------------------------------------------------------------------------------
# data loading
# --------------------------------------------------------------------------------------
@_lazy_cache("cache_data", show_spinner="Reading the bulk file ...", max_entries=16, ttl=3600)
def _read_bulk_bytes(data_hash: str, filename: str, genes_key: str, _data: bytes, _genes: Sequence[str] | None):
    """Parse uploaded bytes with ``read_bulk``; returns (AnnData, warning messages)."""
    from .io import read_bulk

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bulk = read_bulk(io.BytesIO(_data), genes=list(_genes) if _genes is not None else None, filename=filename)
    messages = _warning_messages(caught, bulk)
    return bulk, messages


def _warning_messages(caught: list, bulk: Any) -> list[str]:
    """Unique warning texts: those raised while reading plus those in the input report."""
    messages: list[str] = []
    for w in caught:
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


def read_bulk_upload(data: bytes, filename: str, genes: Sequence[str] | None) -> tuple[Any, list[str]]:
    """Read an uploaded bulk file (cached on its content and the model's genes, never on its name).

    Raises
    ------
    BlueInputError
        The file cannot be used; the message names the problem and the fix.
    """
    genes_key = content_hash("\n".join(genes)) if genes is not None else "none"
    neutral = _neutral_name(filename)
    try:
        bulk, messages = _read_bulk_bytes(content_hash(data), neutral, genes_key, data, genes)
    except BlueInputError as err:
        raise BlueInputError(_personal(str(err), neutral, filename)) from None
    # cache_data hands every caller its own copy: personalising it touches no other session
    bulk.uns["blue_input"] = _personal(dict(bulk.uns.get("blue_input", {})), neutral, filename)
    return bulk, _personal(list(messages), neutral, filename)


@_lazy_cache("cache_data", show_spinner="Loading the demo cohort ...", max_entries=8)
def load_sample(name: str) -> Any:
    """A bundled demo cohort (``blue_core.datasets.load_sample``), cached (a copy per caller)."""
    from .datasets import load_sample as _load

    return _load(name)


def demo_cohorts() -> pd.DataFrame:
    """Table of bundled demo cohorts (``blue_core.datasets.list_samples``); empty if none."""
    try:
        from .datasets import list_samples
    except ImportError:
        return pd.DataFrame(columns=["name", "title"])
    table = list_samples()
    return table.reset_index() if "name" not in table.columns else table


def read_demo_bulk(name: str, genes: Sequence[str] | None) -> tuple[Any, list[str]]:
    """The demo cohort's bulk read with the model's genes, so the report counts matched genes."""
    from .datasets import sample_root

    data = (sample_root() / name / "bulk.csv.gz").read_bytes()
    return read_bulk_upload(data, f"{name}/bulk.csv.gz", genes)


def read_clinical_table(data: bytes, filename: str) -> pd.DataFrame:
    """Read an uploaded clinical table (CSV/TSV/TXT, .gz, or XLSX): first column = sample ID.

    Raises
    ------
    BlueInputError
        Unreadable file, fewer than one data column, or duplicated sample IDs.
    """
    name = filename.lower()
    try:
        if name.endswith((".xlsx", ".xls")):
            table = pd.read_excel(io.BytesIO(data), index_col=0)
        else:
            compression = "gzip" if name.endswith(".gz") else None
            sep = "\t" if name.removesuffix(".gz").endswith((".tsv", ".txt")) else ","
            table = pd.read_csv(io.BytesIO(data), sep=sep, index_col=0, compression=compression)
    except Exception as err:  # noqa: BLE001 - any parser failure becomes a user message
        raise BlueInputError(
            f"Could not read the clinical table {filename!r} ({type(err).__name__}: {err}). "
            "Upload a CSV, TSV or XLSX file with one row per sample and the sample ID in the first column."
        ) from err
    if table.shape[1] == 0 or table.shape[0] == 0:
        raise BlueInputError(
            f"The clinical table {filename!r} has no data columns. Put the sample ID in the first column and "
            "clinical variables (e.g. os_days, os_event, HbA1c) in the following columns."
        )
    table.index = table.index.astype(str)
    table.index.name = "sample"
    dup = table.index[table.index.duplicated()].unique()
    if len(dup):
        raise BlueInputError(
            f"The clinical table has duplicated sample IDs ({', '.join(map(str, dup[:5]))}). "
            "Keep one row per sample."
        )
    return table


# --------------------------------------------------------------------------------------
# deconvolution
# --------------------------------------------------------------------------------------
@_lazy_cache("cache_data", show_spinner=False, max_entries=16, ttl=3600)
def _deconvolve_cached(bulk_key: str, model_key_: str, _bulk: Any, _model: Any) -> Any:
    """``blue_core.deconvolve`` with a progress bar; the cache key is the two content keys."""
    from .inference import deconvolve

    st = _st()
    bar = st.progress(0.0, text="Deconvolving ...")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or "Deconvolving ...")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = deconvolve(_bulk, _model, progress=progress)
    bar.progress(1.0, text="Deconvolution finished")
    return result, _warning_messages(caught, None)


def run_deconvolution(bulk: Any, bulk_key: str, model: Any) -> tuple[Any, list[str]]:
    """Deconvolve ``bulk`` with ``model`` (cached on the bulk's content key and the model's key).

    Returns the ``Deconvolution`` and the texts of the warnings raised (e.g. ``PoorFitWarning``).
    """
    result, messages = _deconvolve_cached(bulk_key, model_key(model), bulk, model)
    # The cached result may come from another session with identical data: its input report (file name
    # included) is replaced by this session's own (cache_data returned a private copy).
    own = dict(getattr(bulk, "uns", {}).get("blue_input", {}) or {})
    result.input_report = {**result.input_report, **{k: own[k] for k in ("source", "warnings") if k in own}}
    return result, messages


def current_result() -> Any | None:
    """The Deconvolution of the loaded data with the picked model, or None."""
    return _st().session_state.get("result")


def require_result() -> Any:
    """The current Deconvolution; otherwise shows the guard message and stops the page."""
    st = _st()
    result = current_result()
    if result is None:
        st.info("Load a cohort first: on **Data & model**, load a demo cohort or upload bulk data, then run the deconvolution.")
        st.stop()
    return result


# --------------------------------------------------------------------------------------
# messages and downloads
# --------------------------------------------------------------------------------------
def show_error(err: BaseException) -> None:
    """Show a user error as a clear message (never a traceback)."""
    st = _st()
    st.error(md(err), icon=":material/error:")


def show_warnings(messages: Sequence[str]) -> None:
    """Show warning texts (they quote file, gene and sample names: shown as plain text)."""
    st = _st()
    for text in messages:
        st.warning(md(text), icon=":material/warning:")


def csv_download(frame: pd.DataFrame, filename: str, *, label: str = "Download data (CSV)", key: str | None = None) -> None:
    """A download button for ``frame`` as CSV (index included)."""
    st = _st()
    st.download_button(
        label,
        frame.to_csv().encode("utf-8"),
        file_name=filename,
        mime="text/csv",
        key=key or f"csv_{filename}",
        icon=":material/download:",
    )


def anndata_bytes(adata: Any) -> bytes:
    """Bytes of an ``.h5ad`` file holding ``adata`` (for a download button)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "expression.h5ad"
        adata.write_h5ad(path)
        return path.read_bytes()


def model_zip_bytes(model: Any) -> bytes:
    """A zip of the model's files (``model.safetensors`` + ``model.json``) written by ``save_model``."""
    from .model import save_model

    from .files import check_model_name

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


def mean_profiles(result: Any) -> pd.DataFrame:
    """Cell types x genes: each cell type's predicted GEP (CPM) averaged over the samples."""
    return pd.DataFrame({str(ct): result.gep(ct).mean(axis=0) for ct in result.cell_types}).T


def unmeasured_genes(result: Any) -> set[str]:
    """Output genes the input did not measure (their GEPs are inferred from the other genes only)."""
    return set((getattr(result, "input_report", None) or {}).get("unmeasured_output_genes") or [])


def mark_unmeasured(frame: pd.DataFrame, result: Any, *, axis: str = "columns") -> pd.DataFrame:
    """``frame`` with ``" †"`` appended to the names of genes (columns or index) the input did not measure."""
    missing = unmeasured_genes(result)
    if not missing:
        return frame
    rename = {g: f"{g} †" for g in (frame.columns if axis == "columns" else frame.index) if g in missing}
    return frame.rename(columns=rename) if axis == "columns" else frame.rename(index=rename)


def versus_reference(result: Any, model: Any, sample: str, genes: Sequence[str]) -> pd.DataFrame | None:
    """Cell types x genes: log2((predicted CPM + 1) / (reference mean CPM + 1)) for one sample -- what is
    specific to this sample. None when the model's card holds no reference profiles."""
    reference = getattr(model, "reference_profiles", None) if model is not None else None
    if reference is None:
        return None
    predicted = sample_profiles(result, sample, genes)
    types = [t for t in predicted.index if t in reference.columns]
    ref = reference.loc[list(genes), types].T
    return np.log2(predicted.loc[types] + 1.0) - np.log2(ref + 1.0)


def sample_profiles(result: Any, sample: str, genes: Sequence[str]) -> pd.DataFrame:
    """Cell types x genes table of one sample's predicted GEPs (CPM), reshaped from ``result.gep``."""
    return pd.DataFrame({str(ct): result.gep(ct).loc[sample, list(genes)] for ct in result.cell_types}).T


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:@=&^\"'])")


def md(text: object) -> str:
    """User-supplied text (file, sample, gene, cell-type, column or model names; messages quoting them)
    made safe to put inside Markdown: every Markdown/Streamlit special character is backslash-escaped,
    so ``![x](http://...)`` or ``[link](...)`` show as typed and never become an image, a link, an
    autolink, a colour directive or a formula. Newlines become spaces."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


#: Plotly keys whose strings are templates written by the code (they hold intended ``<br>`` tags).
_PLOTLY_TEMPLATE_KEYS = frozenset({"hovertemplate", "texttemplate", "template"})


def _escape_plotly(value: Any, key: str = "") -> Any:
    """Escape every string of a figure dict for plotly's HTML-like text (``<a href>``, ``<img>`` ...).

    Plotly renders names, tick labels, hover text and titles as a subset of HTML: a sample called
    ``<a href="...">`` would become a link in the axis. ``&``, ``<`` and ``>`` are turned into entities,
    which plotly displays as the characters typed; colours, modes and other settings contain none of
    them and are unchanged. Templates written by the code (``hovertemplate``) are left alone.
    """
    if key in _PLOTLY_TEMPLATE_KEYS:
        return value
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, dict):
        return {k: _escape_plotly(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape_plotly(v, key) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "OUS":
        return np.vectorize(lambda v: html.escape(v, quote=False) if isinstance(v, str) else v, otypes=[object])(value)
    return value


def safe_figure(fig: "go.Figure") -> "go.Figure":
    """A copy of ``fig`` whose texts show user-supplied names as plain text (see :func:`_escape_plotly`)."""
    import plotly.graph_objects as go

    return go.Figure(_escape_plotly(fig.to_dict()))


def plot(fig: "go.Figure", *, data: pd.DataFrame | None = None, name: str, key: str | None = None) -> None:
    """Show a plotly figure (its toolbar saves a PNG) and a CSV download of the data behind it.

    Every text in the figure is shown as plain text (:func:`safe_figure`): names from the user's files
    can never become links or images in another user's browser.
    """
    st = _st()
    config = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": name, "scale": 2}}
    st.plotly_chart(safe_figure(fig), width="stretch", config=config, key=key or f"fig_{name}")
    if data is not None:
        csv_download(data, f"{name}.csv", label="Download chart data (CSV)", key=f"chartcsv_{key or name}")


# --------------------------------------------------------------------------------------
# figures (tables in, plotly figures out; no computation beyond ordering and reshaping)
# --------------------------------------------------------------------------------------
def _palette(names: Sequence[str]) -> dict[str, str]:
    import plotly.express as px

    colors = px.colors.qualitative.Safe + px.colors.qualitative.Pastel + px.colors.qualitative.Dark24
    return {str(n): colors[i % len(colors)] for i, n in enumerate(names)}


def sample_order(proportions: pd.DataFrame, *, sort_by: str | None = None, groups: pd.Series | None = None) -> list[str]:
    """Order of samples for a bar chart: by group (if any), then by ``sort_by`` descending."""
    frame = proportions.copy()
    keys: list[str] = []
    ascending: list[bool] = []
    if groups is not None:
        frame["__group"] = groups.reindex(frame.index).astype(str).to_numpy()
        keys.append("__group")
        ascending.append(True)
    if sort_by and sort_by in proportions.columns:
        keys.append(sort_by)
        ascending.append(False)
    if keys:
        frame = frame.sort_values(keys, ascending=ascending, kind="mergesort")
    return [str(s) for s in frame.index]


def stacked_bar(proportions: pd.DataFrame, *, order: Sequence[str] | None = None, groups: pd.Series | None = None,
                title: str = "Cell-type proportions per sample", color_names: Sequence[str] | None = None
                ) -> "go.Figure":
    """Stacked bar chart: one bar per sample, one colour per cell type (fractions sum to 1).

    ``color_names`` fixes the colour order, so that two charts give the same name the same colour.
    """
    import plotly.graph_objects as go

    order = list(order) if order is not None else [str(s) for s in proportions.index]
    frame = proportions.copy()
    frame.index = frame.index.astype(str)
    frame = frame.loc[order]
    names = list(dict.fromkeys([*(map(str, color_names or [])), *map(str, frame.columns)]))
    colors = _palette(names)
    if groups is None:
        fig = go.Figure()
        panels = [("", order)]
    else:
        from plotly.subplots import make_subplots

        labels = groups.reindex(frame.index).astype(str).fillna("NA")
        levels = list(dict.fromkeys(labels.loc[order]))
        panels = [(g, [s for s in order if labels[s] == g]) for g in levels]
        fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.01,
                            column_widths=[len(p[1]) for p in panels],
                            subplot_titles=[f"{g} (n={len(p)})" for g, p in panels])
    for col, (group, samples) in enumerate(panels, start=1):
        for cell_type in frame.columns:
            trace = go.Bar(name=str(cell_type), x=samples, y=frame.loc[samples, cell_type].to_numpy(),
                           marker_color=colors[str(cell_type)], legendgroup=str(cell_type), showlegend=col == 1,
                           meta=group, hovertemplate="%{x}<br>%{fullData.name}: %{y:.3f}<extra>%{meta}</extra>")
            if groups is None:
                fig.add_trace(trace)
            else:
                fig.add_trace(trace, row=1, col=col)
    fig.update_layout(barmode="stack", title=title, legend_title_text="cell type", margin=dict(t=70, b=40),
                      height=460, bargap=0.1)
    fig.update_yaxes(range=[0, 1])
    if groups is None:
        fig.update_layout(yaxis_title="fraction of cells", xaxis_title="sample")
    else:
        fig.update_yaxes(title_text="fraction of cells", row=1, col=1)
    if len(order) > 60:
        fig.update_xaxes(showticklabels=False)
    return fig


def group_box(frame: pd.DataFrame, groups: pd.Series, *, value_name: str = "fraction",
              title: str = "") -> "go.Figure":
    """Box plots with every sample as a point: one box per (feature, group)."""
    import plotly.express as px

    data = frame.copy()
    data.index = data.index.astype(str)
    data["group"] = groups.reindex(data.index).astype(str)
    data = data[groups.reindex(data.index).notna().to_numpy()]
    long = data.reset_index(names="sample").melt(id_vars=["sample", "group"], var_name="feature", value_name=value_name)
    fig = px.box(long, x="feature", y=value_name, color="group", points="all", hover_data=["sample"], title=title)
    fig.update_layout(xaxis_title="", legend_title_text="group", height=430, margin=dict(t=50, b=40))
    return fig


def scatter_vs(frame: pd.DataFrame, covariate: pd.Series, *, covariate_name: str, value_name: str = "fraction",
               title: str = "") -> "go.Figure":
    """One panel per feature: value against a numeric clinical covariate, a point per sample."""
    import plotly.express as px

    data = frame.copy()
    data.index = data.index.astype(str)
    data[covariate_name] = pd.to_numeric(covariate.reindex(data.index), errors="coerce")
    data = data.dropna(subset=[covariate_name])
    long = data.reset_index(names="sample").melt(id_vars=["sample", covariate_name], var_name="feature",
                                                 value_name=value_name)
    ncol = min(4, max(1, frame.shape[1]))
    fig = px.scatter(long, x=covariate_name, y=value_name, facet_col="feature", facet_col_wrap=ncol,
                     hover_data=["sample"], title=title)
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    rows = int(np.ceil(frame.shape[1] / ncol))
    fig.update_layout(height=max(300, 240 * rows), margin=dict(t=60, b=40))
    return fig


def fit_bar(fit: pd.DataFrame, *, threshold: float | None = None) -> "go.Figure":
    """Per-sample fit score (``fit_r``); poorly explained samples in red; the model's threshold dashed."""
    import plotly.graph_objects as go

    frame = fit.copy()
    frame.index = frame.index.astype(str)
    poor = frame["poorly_explained"].astype(bool) if "poorly_explained" in frame else pd.Series(False, frame.index)
    fig = go.Figure()
    for flag, color, label in ((False, "#4c78a8", "well explained"), (True, "#d62728", "poorly explained")):
        part = frame[poor == flag]
        if len(part):
            fig.add_bar(x=part.index.tolist(), y=part["fit_r"].to_numpy(), name=label, marker_color=color,
                        hovertemplate="%{x}<br>fit r: %{y:.3f}<extra></extra>")
    if threshold is not None and np.isfinite(threshold):
        fig.add_hline(y=float(threshold), line_dash="dash", line_color="#d62728",
                      annotation_text=f"poorly explained below {threshold:.2f}", annotation_position="top left")
    fig.update_layout(title="How well the model explains each sample (fit r: reconstruction vs input)",
                      yaxis_title="fit r", xaxis_title="sample", height=340, margin=dict(t=50, b=40),
                      showlegend=True,
                      xaxis={"categoryorder": "array", "categoryarray": frame.index.tolist()})
    if len(frame) > 60:
        fig.update_xaxes(showticklabels=False)
    return fig


def interval_table(result: Any, sample: str) -> pd.DataFrame:
    """One sample's proportions with their 90 % interval: cell types x (proportion, lo, hi)."""
    return pd.DataFrame({"proportion": result.proportions.loc[sample], "lo": result.proportions_lo.loc[sample],
                         "hi": result.proportions_hi.loc[sample]}).rename_axis("cell type")


def interval_bars(result: Any, sample: str) -> "go.Figure":
    """Bar per cell type (mean proportion of the ensemble) with its 90 % interval as error bars."""
    import plotly.graph_objects as go

    table = interval_table(result, sample)
    colors = _palette(list(result.cell_types))
    fig = go.Figure(go.Bar(
        x=[str(t) for t in table.index], y=table["proportion"].to_numpy(),
        marker_color=[colors[str(t)] for t in table.index],
        error_y=dict(type="data", symmetric=False, array=(table["hi"] - table["proportion"]).to_numpy(),
                     arrayminus=(table["proportion"] - table["lo"]).to_numpy(), color="#333"),
        customdata=np.stack([table["lo"].to_numpy(), table["hi"].to_numpy()], axis=1),
        hovertemplate="%{x}: %{y:.3f} (90% interval %{customdata[0]:.3f}-%{customdata[1]:.3f})<extra></extra>",
    ))
    fig.update_layout(title=f"Cell-type proportions of {sample} with 90% intervals", yaxis_title="fraction of cells",
                      xaxis_title="cell type", height=380, margin=dict(t=50, b=40))
    fig.update_yaxes(range=[0, 1])
    return fig


def truth_vs_prediction(predicted: pd.DataFrame, truth: pd.DataFrame, *, title: str) -> "go.Figure":
    """Measured (x) vs predicted (y) proportions, one colour per cell type, with the identity line."""
    import plotly.graph_objects as go

    shared = [c for c in predicted.columns if c in truth.columns]
    samples = predicted.index.astype(str).intersection(truth.index.astype(str))
    colors = _palette(shared)
    fig = go.Figure()
    for cell_type in shared:
        fig.add_scatter(x=truth.loc[samples, cell_type].to_numpy(), y=predicted.loc[samples, cell_type].to_numpy(),
                        mode="markers", name=str(cell_type), text=list(samples), marker=dict(size=9, color=colors[cell_type]),
                        hovertemplate="%{text}<br>measured %{x:.3f}<br>predicted %{y:.3f}<extra>%{fullData.name}</extra>")
    top = float(np.nanmax([truth.loc[samples, shared].to_numpy().max(), predicted.loc[samples, shared].to_numpy().max(), 0.05]))
    fig.add_scatter(x=[0, top], y=[0, top], mode="lines", line=dict(dash="dash", color="grey"), name="y = x",
                    hoverinfo="skip")
    fig.update_layout(title=title, xaxis_title="measured (flow cytometry)", yaxis_title="predicted by BLUE",
                      height=460, margin=dict(t=50, b=40))
    return fig


def truth_mapping(cohort_info: dict | None, model_name: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """The documented mapping of a model's cell types and a cohort's measured populations onto one
    vocabulary, from the cohort card: ``truth_mapping[<model>] = {"model": {...}, "truth": {...}}``."""
    entry = ((cohort_info or {}).get("truth_mapping") or {}).get(str(model_name))
    if not entry or not entry.get("model") or not entry.get("truth"):
        return None
    return dict(entry["model"]), dict(entry["truth"])


def heatmap(frame: pd.DataFrame, *, title: str, colorbar: str, diverging: bool = False,
            x_title: str = "", y_title: str = "", log_color: bool = False) -> "go.Figure":
    """Heatmap of a table (rows drawn top to bottom in the given order).

    ``log_color`` colours by log10(value + 1) (for CPM spanning orders of magnitude); the hover
    still shows the value itself.
    """
    import plotly.graph_objects as go

    values = frame.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=np.log10(np.clip(values, 0, None) + 1) if log_color else values, customdata=values,
        x=[str(c) for c in frame.columns], y=[str(i) for i in frame.index],
        colorscale="RdBu_r" if diverging else "Viridis", zmid=0 if diverging else None,
        colorbar=dict(title=f"log10({colorbar} + 1)" if log_color else colorbar),
        hovertemplate="%{y} / %{x}: %{customdata:.3g}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title,
                      height=max(360, min(1400, 18 * frame.shape[0] + 160)), margin=dict(t=50, b=40))
    fig.update_yaxes(autorange="reversed")
    if frame.shape[1] > 80:
        fig.update_xaxes(showticklabels=False)
    return fig


def forest(summary: pd.DataFrame, *, reference: str) -> "go.Figure":
    """Hazard ratios with 95% CI per group (log scale), the reference group at 1."""
    import plotly.graph_objects as go

    rows = summary[np.isfinite(summary["hr"].astype(float))]
    fig = go.Figure(go.Scatter(
        x=rows["hr"], y=rows["group"].astype(str), mode="markers", marker=dict(size=11, color="#1f4e9c"),
        error_x=dict(type="data", symmetric=False, array=(rows["hr_upper"] - rows["hr"]).fillna(0),
                     arrayminus=(rows["hr"] - rows["hr_lower"]).fillna(0)),
        hovertemplate="%{y}: HR %{x:.2f}<extra></extra>",
    ))
    fig.add_vline(x=1, line_dash="dash", line_color="grey")
    fig.update_layout(title=f"Cox hazard ratios vs {reference} (95% CI; > 1 = higher risk)", xaxis_type="log",
                      xaxis_title="hazard ratio", height=120 + 45 * len(rows), margin=dict(t=50, b=40))
    fig.update_yaxes(autorange="reversed")
    return fig


def bar_table(frame: pd.DataFrame, *, x: str, y: str, color: str | None = None, title: str,
              orientation: str = "h") -> "go.Figure":
    """Horizontal bar chart of a results table (e.g. enrichment scores, hazard ratios)."""
    import plotly.express as px

    data = frame.reset_index()
    fig = px.bar(data, x=x, y=y, color=color, orientation=orientation, title=title,
                 color_continuous_scale="Viridis_r" if color else None,
                 range_color=[0, 1] if color in ("fdr", "p") else None,
                 labels={x: x.replace("_", " "), y: y.replace("_", " "), **({color: color.upper()} if color == "fdr" else {})})
    fig.update_layout(height=max(320, 22 * len(data) + 140), margin=dict(t=50, b=40))
    fig.update_yaxes(autorange="reversed")
    return fig


def guess_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    """First column whose lower-cased name is in ``candidates`` (for default selections)."""
    lower = {str(c).lower(): str(c) for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    return None


def categorical_columns(clinical: pd.DataFrame | None, *, max_levels: int = 8) -> list[str]:
    """Clinical columns usable as groups: 2..max_levels distinct values."""
    if clinical is None:
        return []
    return [str(c) for c in clinical.columns if 2 <= clinical[c].nunique(dropna=True) <= max_levels]


def numeric_columns(clinical: pd.DataFrame | None, *, min_levels: int = 9) -> list[str]:
    """Numeric clinical columns with many distinct values (usable as a covariate)."""
    if clinical is None:
        return []
    out = []
    for c in clinical.columns:
        values = pd.to_numeric(clinical[c], errors="coerce")
        if values.notna().sum() >= 3 and values.nunique() >= min_levels:
            out.append(str(c))
    return out


def sidebar_status() -> None:
    """A short summary, in the sidebar, of what is loaded (data, model, result)."""
    st = _st()
    state = st.session_state
    with st.sidebar:
        st.caption("Current session")
        st.markdown(
            f"**Data:** {md(state.get('bulk_label') or '—')}  \n"
            f"**Model:** {md(model_label(state['model_name']) if state.get('model_name') else '—')}  \n"
            f"**Clinical:** {md(state.get('clinical_label') or '—')}  \n"
            f"**Result:** {'ready' if state.get('result') is not None else '—'}"
        )


# --------------------------------------------------------------------------------------
# Data & model page: callbacks (state changes happen here) and views
# --------------------------------------------------------------------------------------
def on_model_change() -> None:
    """Model picker callback: remember the choice and drop results of the previous model."""
    st = _st()
    st.session_state["model_name"] = st.session_state.get("model_picker")
    reset_results()


def on_bulk_upload() -> None:
    """Bulk uploader callback: keep the file's bytes in this session and forget old results."""
    st = _st()
    upload = st.session_state.get("bulk_upload")
    state = st.session_state
    if upload is None:  # the user removed the file
        if state.get("bulk_source") == "upload":
            state["bulk_source"] = state["bulk_bytes"] = state["bulk_filename"] = state["bulk_label"] = None
            reset_results()
        return
    if state.get("demo_name"):  # the demo's clinical data and truth do not belong to the new file
        state["clinical"] = state["clinical_label"] = state["truth"] = state["cohort_info"] = None
    state["bulk_source"] = "upload"
    state["bulk_bytes"] = upload.getvalue()
    state["bulk_filename"] = upload.name
    state["bulk_label"] = upload.name
    state["demo_name"] = None
    state["demo_notice"] = None
    state["auto_run"] = False
    reset_results()


def on_clinical_upload() -> None:
    """Clinical uploader callback: parse the table (errors are kept and shown by the page)."""
    st = _st()
    state = st.session_state
    upload = state.get("clinical_upload")
    state["clinical_error"] = None
    if upload is None:  # the user removed the file
        if state.get("clinical_label") and not str(state["clinical_label"]).startswith("demo:"):
            state["clinical"] = state["clinical_label"] = None
        return
    try:
        state["clinical"] = read_clinical_table(upload.getvalue(), upload.name)
        state["clinical_label"] = upload.name
    except BlueInputError as err:
        state["clinical_error"] = str(err)
    state["subtypes"] = state["subtypes_key"] = state["validation"] = None


def load_demo(name: str) -> None:
    """Demo button callback: load a bundled cohort (bulk, clinical, truth), pick its model, run."""
    st = _st()
    state = st.session_state
    cohort = load_sample(name)
    state["bulk_source"] = "demo"
    state["demo_name"] = name
    state["bulk_bytes"] = state["bulk_filename"] = None
    state["bulk_label"] = f"demo: {getattr(cohort, 'title', None) or name}"
    state["clinical"] = getattr(cohort, "clinical", None)
    state["clinical_label"] = f"demo: {name}" if state["clinical"] is not None else None
    state["truth"] = getattr(cohort, "truth", None)
    state["cohort_info"] = getattr(cohort, "info", None)
    recommended = getattr(cohort, "recommended_model", None)
    state["demo_notice"] = None
    if recommended and recommended in model_options():
        state["model_name"] = recommended
        state["model_picker"] = recommended
    elif recommended:
        state["demo_notice"] = (f"This demo is meant for the {recommended!r} model, which is not installed; "
                                f"it is run with {state.get('model_name')!r} instead.")
    state["auto_run"] = True
    reset_results()


def model_read_genes(model: Any | None) -> list[str] | None:
    """Genes to hand ``read_bulk`` (``BlueModel.read_genes``; None without a model)."""
    return None if model is None else model.read_genes


def load_current_bulk(model: Any | None) -> tuple[Any | None, list[str], str | None]:
    """The loaded bulk data read against the model's genes: (AnnData, warnings, content key).

    Returns ``(None, [], None)`` when nothing is loaded.

    Raises
    ------
    BlueInputError
        The data cannot be used (the message says why and how to fix it).
    """
    st = _st()
    state = st.session_state
    genes = model_read_genes(model)
    genes_key = content_hash("\n".join(genes)) if genes is not None else "none"
    if state.get("bulk_source") == "upload" and state.get("bulk_bytes") is not None:
        bulk, messages = read_bulk_upload(state["bulk_bytes"], state["bulk_filename"], genes)
        return bulk, messages, f"{content_hash(state['bulk_bytes'])}:{genes_key}"
    if state.get("bulk_source") == "demo" and state.get("demo_name"):
        bulk, messages = read_demo_bulk(state["demo_name"], genes)
        return bulk, messages, f"demo:{state['demo_name']}:{genes_key}"
    return None, [], None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts / lists of dicts -> {"a.b": scalar} for display."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    if isinstance(value, (list, tuple)):
        return {prefix: f"{len(value)} items" if len(value) > 12 else ", ".join(map(str, value))}
    return {prefix: value}


def card_table(section: Any) -> pd.DataFrame:
    """A model-card section (nested dict) as a two-column table: item, value."""
    flat = _flatten(section or {})
    rows = [(k, (f"{v:.3g}" if isinstance(v, float) else str(v))) for k, v in flat.items() if k]
    return pd.DataFrame(rows, columns=["item", "value"])


def show_model_card(model: Any, *, expanded: bool = True) -> None:
    """The model card: tissue, cell types, genes, training data, validation numbers."""
    st = _st()
    card = getattr(model, "card", {}) or {}
    with st.expander(f"Model card: {md(getattr(model, 'name', ''))}", expanded=expanded):
        if card.get("description"):
            st.markdown(md(card["description"]))
        if card.get("limitations"):
            st.warning(f"**Known limitations (from validation):** {md(card['limitations'])}")
        cols = st.columns(4)
        cols[0].metric("Tissue", str(card.get("tissue", "—")))
        cols[1].metric("Cell types", len(model.cell_types))
        cols[2].metric("Input genes", f"{len(model.input_genes):,}")
        cols[3].metric("Output genes (GEPs)", f"{len(model.output_genes):,}")
        st.markdown("**Cell types:** " + ", ".join(map(md, model.cell_types)))
        left, right = st.columns(2)
        with left:
            st.markdown("**Training data**")
            provenance = dict(card.get("provenance") or {})
            provenance.pop("recipe", None)  # the recipe file itself; its content is summarised below
            references = provenance.pop("references", None)
            per_type = provenance.pop("cells_per_type", None)
            command = provenance.pop("rebuild_command", None)
            if references:
                st.dataframe(pd.DataFrame(references), hide_index=True, width="stretch")
            if per_type:
                st.dataframe(pd.Series(per_type, name="cells").rename_axis("cell type").to_frame(), width="stretch")
            if provenance:
                st.dataframe(card_table(provenance), hide_index=True, width="stretch")
            if command:
                st.code(command, language="bash")
            if card.get("training_time_s"):
                st.caption(f"Training time: {float(card['training_time_s']) / 60:.1f} min")
            if not (references or per_type or provenance or command):
                st.caption("No provenance recorded in this model's card.")
        with right:
            real = card.get("real_data_validation")
            if real:
                st.markdown("**Validation on real cohorts**")
                st.dataframe(pd.DataFrame(real), hide_index=True, width="stretch")
            st.markdown("**Validation on simulated mixtures** (pseudo-bulk from held-out cells, not real bulk: "
                        "an upper bound on real-data accuracy)")
            validation = card.get("validation")
            if validation:
                st.dataframe(card_table(validation), hide_index=True, width="stretch")
            else:
                st.caption("No validation numbers recorded in this model's card.")


def show_input_report(bulk: Any, messages: Sequence[str], model: Any | None = None) -> None:
    """The input report of ``read_bulk``: samples, genes, units, genes matched, every warning.

    "Model genes found" comes from ``model.match_genes`` (the rule ``deconvolve`` decides with), so a
    multi-panel model shows the genes of the panel it will read.
    """
    st = _st()
    report = dict(bulk.uns.get("blue_input", {}) or {})
    if model is not None and hasattr(model, "match_genes"):
        match = model.match_genes(bulk.var_names)
        report.update(n_model_genes=match.n_expected, n_model_genes_matched=match.n_matched)
    cols = st.columns(5)
    cols[0].metric("Samples", f"{report.get('n_samples', bulk.n_obs):,}")
    cols[1].metric("Genes", f"{report.get('n_genes', bulk.n_vars):,}")
    cols[2].metric("Units detected", str(report.get("units", "—")))
    cols[3].metric("Gene IDs", str(report.get("gene_id_type", "—")))
    if report.get("n_model_genes"):
        matched, total = report.get("n_model_genes_matched", 0), report["n_model_genes"]
        cols[4].metric("Model genes found", f"{matched:,} / {total:,}", f"{100 * matched / total:.0f}%",
                       delta_color="off")
    else:
        cols[4].metric("Model genes found", "—")
    details = {k: report[k] for k in ("source", "orientation", "n_duplicates_summed") if k in report}
    if details:
        st.caption(" · ".join(f"{k.replace('_', ' ')}: {md(v)}" for k, v in details.items()))
    show_warnings(messages)
    missing = report.get("missing_model_genes")
    if missing:
        with st.expander(f"{len(missing):,} model genes missing from the data"):
            st.text(", ".join(map(str, list(missing)[:500])) + (" ..." if len(missing) > 500 else ""))


# --------------------------------------------------------------------------------------
# subtypes, survival, enrichment: cached on the content key of the result they start from
# --------------------------------------------------------------------------------------
def result_key() -> str:
    """Content key of the current result (bulk content + model), for caching what derives from it."""
    key = _st().session_state.get("result_key")
    return "|".join(map(str, key)) if key else "none"


@_lazy_cache("cache_data", show_spinner=False, max_entries=16, ttl=3600)
def _fit_subtypes(key: str, features: str, cell_types: tuple[str, ...], k: int | None, _result: Any) -> Any:
    from .subtypes import SubtypeClustering

    bar = _st().progress(0.0, text="Finding subtypes (consensus clustering) ...")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or "Clustering ...")

    clustering = SubtypeClustering(k=k, features=features, cell_types=list(cell_types)).fit(_result, progress=progress)
    bar.progress(1.0, text="Subtypes found")
    return clustering


def fit_subtypes(result: Any, *, features: str, cell_types: Sequence[str], k: int | None) -> Any:
    """``SubtypeClustering(k, features, cell_types).fit(result)``, cached per result and settings."""
    return _fit_subtypes(result_key(), features, tuple(cell_types), k, result)


def fit_survival(labels: pd.Series, clinical: pd.DataFrame, *, time_col: str, event_col: str) -> Any:
    """``SurvivalAnalysis(time_col, event_col).fit(labels, clinical)`` with a unit read from the column name."""
    from .survival import SurvivalAnalysis

    lower = time_col.lower()
    unit = "months" if "month" in lower else "years" if "year" in lower else "days"
    return SurvivalAnalysis(time_col, event_col, time_unit=unit).fit(labels, clinical)


def survival_columns(clinical: pd.DataFrame | None) -> tuple[list[str], list[str]]:
    """Candidate (time columns, event columns) of a clinical table: numeric / two-valued columns."""
    if clinical is None:
        return [], []
    times = [str(c) for c in clinical.columns if pd.to_numeric(clinical[c], errors="coerce").notna().sum() >= 3
             and clinical[c].nunique() > 2]
    events = [str(c) for c in clinical.columns if clinical[c].nunique(dropna=True) == 2]
    return times, events


def validate_on_cohort(name: str, model: Any, subtypes: Any, *, time_col: str, event_col: str) -> dict[str, Any]:
    """Cross-cohort validation: deconvolve demo cohort ``name`` with ``model``, assign its samples to the
    fitted subtypes (``subtypes.predict``) and fit survival there. Returns labels, survival and notes."""
    cohort = load_sample(name)
    bulk, messages = read_demo_bulk(name, model_read_genes(model))
    other, _ = run_deconvolution(bulk, f"demo:{name}", model)
    labels = subtypes.predict(other)
    clinical = getattr(cohort, "clinical", None)
    if clinical is None:
        raise BlueInputError(f"The cohort {name!r} has no clinical table, so survival cannot be validated on it.")
    survival = fit_survival(labels, clinical, time_col=time_col, event_col=event_col)
    return {"name": name, "title": getattr(cohort, "title", None) or name, "labels": labels, "survival": survival,
            "messages": messages, "n_features": labels.attrs.get("n_features")}


def gene_set_collections() -> pd.DataFrame:
    """The shipped gene-set collections (``blue_core.enrichment.list_gene_set_collections``)."""
    from .enrichment import list_gene_set_collections

    return list_gene_set_collections()


@_lazy_cache("cache_data", show_spinner="Running gene-set enrichment ...", max_entries=32, ttl=3600)
def _enrich(key: str, labels_key: str, group: str, cell_type: str, collections: tuple[str, ...], method: str,
            _result: Any, _labels: pd.Series) -> pd.DataFrame:
    from .enrichment import enrich

    return enrich(_result, _labels, group=group, cell_type=cell_type, gene_sets=list(collections), method=method)


def run_enrichment(result: Any, labels: pd.Series, *, group: str, cell_type: str, collections: Sequence[str],
                   method: str) -> pd.DataFrame:
    """``blue_core.enrich`` for one group and cell type, cached per result, labels and settings."""
    labels_key = content_hash(labels.astype(str).to_csv())
    return _enrich(result_key(), labels_key, str(group), str(cell_type), tuple(collections), method, result, labels)


# --------------------------------------------------------------------------------------
# Train page
# --------------------------------------------------------------------------------------
def on_reference_upload() -> None:
    """Reference uploader callback: keep the h5ad bytes in this session."""
    st = _st()
    state = st.session_state
    upload = state.get("reference_upload")
    state["ref_bytes"] = upload.getvalue() if upload is not None else None
    state["ref_filename"] = upload.name if upload is not None else None


@_lazy_cache("cache_data", show_spinner="Reading the reference ...", max_entries=4, ttl=3600)
def _obs_table(data_hash: str, _data: bytes) -> pd.DataFrame:
    from .io import read_reference_obs

    return read_reference_obs(_data, filename="the uploaded file")


def reference_obs(data: bytes) -> pd.DataFrame:
    """The ``obs`` table (cell annotations) of an uploaded h5ad, to pick the label columns from."""
    return _obs_table(content_hash(data), data)


@_lazy_cache("cache_data", show_spinner="Checking the reference ...", max_entries=4, ttl=3600)
def _read_reference(data_hash: str, filename: str, cell_type_key: str, donor_key: str | None, _data: bytes
                    ) -> tuple[Any, list[str]]:
    from .io import read_reference

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
    from .training import train_model

    st = _st()
    bar = st.progress(0.0, text="Starting training ...")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or "Training ...")

    model = train_model(reference, progress=progress, **settings)
    bar.progress(1.0, text="Training finished")
    return model


def use_trained_model(name: str) -> None:
    """Callback: make a model trained in this session the current model."""
    st = _st()
    st.session_state["model_name"] = TRAINED_PREFIX + name
    st.session_state["model_picker"] = TRAINED_PREFIX + name
    reset_results()
