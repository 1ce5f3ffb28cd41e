"""Per-session state of the app: defaults, callbacks (state changes happen here), current model and result.

A user's data lives only in that user's ``st.session_state``; every page calls :func:`init_state` first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import streamlit as st

from blue_core.analysis.clinical import read_clinical_table
from blue_core.exceptions import BlueInputError, BlueModelError

from .cache import content_hash, load_pretrained, load_sample, pretrained_models, read_bulk_upload, read_demo_bulk

if TYPE_CHECKING:  # pragma: no cover
    from blue_core.engine.model import BlueModel

__all__ = ["analysis_inputs", "on_analysis_upload", "on_model_zip_upload", "use_model", "follow_recommendation", "TRAINED_PREFIX", "init_state", "reset_results", "model_options", "model_label", "get_model", "current_model", "current_result", "require_result", "on_model_change", "on_bulk_upload", "on_clinical_upload", "load_demo", "load_current_bulk", "on_reference_upload", "use_trained_model"]


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
    "validation": lambda: None,  # CohortValidation of the fitted subtypes in a second cohort
    "survival": lambda: None,  # SurvivalAnalysis of the subtypes last shown (goes into the analysis zip)
    "analysis_error": lambda: None,  # message of an unusable analysis zip
    "bundle_trust": lambda: None,  # trust table saved in a reopened analysis zip
    "demo_notice": lambda: None,  # message when a demo's recommended model is missing
    "auto_run": lambda: False,  # a demo was just loaded: deconvolve it without another click
    "model_chosen": lambda: False,  # the user (or a demo) picked the model; else the data's recommendation wins
    "run_warnings": list,  # warnings raised by the last deconvolution
    "clinical_error": lambda: None,  # message of an unusable clinical upload
    "ref_bytes": lambda: None,  # Train page: uploaded single-cell reference (h5ad bytes)
    "ref_filename": lambda: None,
    "last_trained": lambda: None,  # name of the last model trained (or loaded from its zip) in this session
    "model_zip_error": lambda: None,  # message of an unusable model zip
}


def init_state() -> None:
    """Create every session-state key the app uses (only where missing)."""
    for key, factory in _STATE_DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = factory()


def reset_results() -> None:
    """Forget results computed from the previous data or model (call when either changes)."""
    for key in ("result", "result_key", "subtypes", "subtypes_key", "validation", "survival"):
        st.session_state[key] = None


def model_options() -> list[str]:
    """Keys the model picker offers: pretrained names, then this session's trained models."""
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
    if key.startswith(TRAINED_PREFIX):
        return st.session_state["trained_models"].get(key[len(TRAINED_PREFIX):])
    return load_pretrained(key)


def current_model() -> Any | None:
    """The model picked on the Data & model page (None when none is picked or it cannot load)."""
    try:
        return get_model(st.session_state.get("model_name"))
    except (BlueModelError, FileNotFoundError, ImportError):
        return None


def current_result() -> Any | None:
    """The Deconvolution of the loaded data with the picked model, or None."""
    return st.session_state.get("result")


def require_result() -> Any:
    """The current Deconvolution; otherwise shows the guard message and stops the page."""
    result = current_result()
    if result is None:
        st.info("Load a cohort first: on **Data & model**, load a demo cohort or upload bulk data, then run the deconvolution.")
        st.stop()
    return result


def on_model_change() -> None:
    """Model picker callback: remember the choice and drop results of the previous model."""
    st.session_state["model_name"] = st.session_state.get("model_picker")
    st.session_state["model_chosen"] = True
    reset_results()


def use_model(name: str) -> None:
    """Button callback: switch to the model recommended for the data."""
    st.session_state["model_name"] = name
    st.session_state["model_picker"] = name
    st.session_state["model_chosen"] = True
    reset_results()


def follow_recommendation(name: str) -> None:
    """The data choose the model (the user has not): select ``name`` for the next run. Only ``model_name`` is set
    (the page copies it into the picker before drawing it), and the choice stays the data's, not the user's."""
    st.session_state["model_name"] = name
    reset_results()


def on_bulk_upload() -> None:
    """Bulk uploader callback: keep the file's bytes in this session and forget old results."""
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
        previous = state.get("model_name")
        if previous and str(previous).startswith(TRAINED_PREFIX) and previous != recommended:
            state["demo_notice"] = (f"This demo is meant for the {recommended!r} model, so it is now selected instead of "
                                    f"your trained model {previous[len(TRAINED_PREFIX):]!r}; yours stays available in "
                                    "the model picker.")
        state["model_name"] = recommended
        state["model_picker"] = recommended
        state["model_chosen"] = True
    elif recommended:
        state["demo_notice"] = (f"This demo is meant for the {recommended!r} model, which is not installed; "
                                f"it is run with {state.get('model_name')!r} instead.")
    state["auto_run"] = True
    reset_results()


def current_trust_report() -> Any | None:
    """The ``TrustReport`` of the result in this session, as the Data & model page shows it (``cache.trust_report``
    on the loaded data and model; cached), or None (no result, no model, or data not loaded from an upload or demo).
    """
    state = st.session_state
    result, model = state.get("result"), current_model()
    if result is None or model is None or state.get("bulk_source") not in ("upload", "demo"):
        return None
    from .cache import trust_report

    try:
        bulk, _, key = load_current_bulk(model)
    except BlueInputError:
        return None
    return trust_report(bulk, key, model, result) if bulk is not None else None


def current_trust() -> tuple[Any | None, str | None]:
    """The trust verdicts of the result in this session: ``(table, summary)``.

    :func:`current_trust_report`'s, or for a reopened analysis the verdicts saved in it (no summary);
    ``(None, None)`` when there are none.
    """
    if st.session_state.get("bulk_source") == "bundle":
        return st.session_state.get("bundle_trust"), None
    report = current_trust_report()
    return (report.table, report.summary) if report is not None else (None, None)


def load_current_bulk(model: BlueModel | None) -> tuple[Any | None, list[str], str | None]:
    """The loaded bulk data, checked against the model's genes: (AnnData, warnings, content key).

    Reading depends on the data only (cached on their content); the model then decides whether it can read
    them (``BlueModel.check_genes``, the rule ``deconvolve`` uses). Returns ``(None, [], None)`` when nothing
    is loaded.

    Raises
    ------
    BlueInputError
        The data cannot be used, or not with this model (the message says why and how to fix it).
    """
    import warnings

    state = st.session_state
    if state.get("bulk_source") == "upload" and state.get("bulk_bytes") is not None:
        bulk, messages = read_bulk_upload(state["bulk_bytes"], state["bulk_filename"])
        key = content_hash(state["bulk_bytes"])
    elif state.get("bulk_source") == "demo" and state.get("demo_name"):
        bulk, messages = read_demo_bulk(state["demo_name"])
        key = f"demo:{state['demo_name']}"
    else:
        return None, [], None
    if model is not None:
        with warnings.catch_warnings():  # a low overlap is warned by the run itself, once
            warnings.simplefilter("ignore")
            model.check_genes(bulk.var_names, source=state.get("bulk_label") or None,
                              report=bulk.uns.get("blue_input"))
    return bulk, messages, key


def on_reference_upload() -> None:
    """Reference uploader callback: keep the h5ad bytes in this session."""
    state = st.session_state
    upload = state.get("reference_upload")
    state["ref_bytes"] = upload.getvalue() if upload is not None else None
    state["ref_filename"] = upload.name if upload is not None else None


def _open_upload(key: str, error_key: str, reader: Callable[[bytes], Any]) -> tuple[Any, Any]:
    """``(upload, reader(bytes))`` of the uploader ``key``; ``(None, None)`` when removed or unreadable (the
    message is kept in ``error_key`` for the page to show)."""
    from blue_core.exceptions import BlueModelError

    state = st.session_state
    upload = state.get(key)
    state[error_key] = None
    if upload is None:
        return None, None
    try:
        return upload, reader(upload.getvalue())
    except (BlueInputError, BlueModelError) as err:
        state[error_key] = str(err)
        return None, None


def on_model_zip_upload() -> None:
    """Model-zip uploader callback: load a model downloaded earlier into this session (``load_model_zip``)."""
    from blue_core.engine.model import load_model_zip

    state = st.session_state
    _, model = _open_upload("model_zip_upload", "model_zip_error", load_model_zip)
    if model is None:
        return
    state["trained_models"][model.name] = model
    state["last_trained"] = model.name


def on_analysis_upload() -> None:
    """Saved-analysis uploader callback: reopen a zip from 'Download this analysis' (``read_bundle``)."""
    from blue_core.io.bundle import read_bundle

    state = st.session_state
    upload, bundle = _open_upload("analysis_upload", "analysis_error", read_bundle)
    if bundle is None:
        return
    reset_results()
    manifest = bundle.manifest
    state["bulk_source"] = "bundle"
    state["bulk_bytes"] = state["bulk_filename"] = state["demo_name"] = None
    state["clinical"] = state["truth"] = state["cohort_info"] = None
    state["clinical_label"] = None
    state["bulk_label"] = f"saved analysis: {(manifest.get('inputs') or {}).get('bulk') or upload.name}"
    model_name = (manifest.get("model") or {}).get("name")
    if model_name in model_options():
        state["model_name"] = state["model_picker"] = model_name
        state["model_chosen"] = True
    state["result"] = bundle.result
    state["bundle_trust"] = bundle.trust  # the verdicts saved with it (results pages show them)
    state["result_key"] = (f"bundle:{content_hash(upload.getvalue())}", str(model_name))


def use_trained_model(name: str) -> None:
    """Callback: make a model trained in this session the current model."""
    st.session_state["model_name"] = TRAINED_PREFIX + name
    st.session_state["model_picker"] = TRAINED_PREFIX + name
    reset_results()


def analysis_inputs() -> dict[str, Any]:
    """What ``export.analysis_zip`` needs from this session: the result, its model and verdict, the subtypes of this
    result (if any) and survival, and the inputs' names."""
    from .cache import result_key

    state = st.session_state
    subtypes = state.get("subtypes")
    labels = subtypes.labels_ if subtypes is not None and state.get("subtypes_key") == result_key() else None
    return dict(result=state["result"], model=current_model(), trust=current_trust_report(), labels=labels,
                survival=state.get("survival"),
                inputs={"bulk": state.get("bulk_label"), "clinical": state.get("clinical_label")})
