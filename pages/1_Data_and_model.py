"""Data & model: pick a tissue model, load a demo cohort or upload bulk data, check it, deconvolve."""

from __future__ import annotations

import streamlit as st

from blue_studio import cache, state as app_state, views
from blue_core.exceptions import BlueInputError, BlueModelError

app_state.init_state()
state = st.session_state

st.title("Data & model")
st.caption("Pick a tissue model, load your bulk RNA-seq (or a demo cohort), check the input report, run BLUE.")

# 1. model ---------------------------------------------------------------------------------------
st.subheader("1 · Tissue model")
options = app_state.model_options()
model = None
if not options:
    st.warning("No model is installed. Train one on **Train a model**, or ask your administrator to install "
               "the pretrained models in `pretrained/`.")
else:
    if state.get("model_name") not in options:
        state["model_name"] = options[0]
    state["model_picker"] = state["model_name"]
    st.selectbox("Model", options, key="model_picker", format_func=app_state.model_label, on_change=app_state.on_model_change,
                 help="A pretrained model knows one tissue's cell types. Pick the one that matches your samples.")
    try:
        model = app_state.get_model(state["model_name"])
    except BlueModelError as err:
        views.show_error(err)
    if model is not None:
        views.show_model_card(model, expanded=False)

# 2. data ----------------------------------------------------------------------------------------
st.subheader("2 · Bulk data")
demo_tab, upload_tab, saved_tab = st.tabs(["Demo cohorts", "Upload your data", "Saved analysis"])
with demo_tab:
    demos = cache.demo_cohorts()
    if demos.empty:
        st.caption("No demo cohort is installed.")
    else:
        st.caption("Real public cohorts: one click loads the data (and its clinical table) and runs the recommended model.")
    for row in demos.itertuples(index=False):
        title = str(getattr(row, "title", None) or row.name)
        left, right = st.columns([1, 4])
        left.button(f"Load {title.split(':')[0]}", key=f"demo_{row.name}", on_click=app_state.load_demo,
                    args=(row.name,), width="stretch", help=title)
        right.markdown(f"**{views.md(title)}**  \n{views.md(getattr(row, 'description', ''))}")
    if state.get("demo_notice"):
        views.show_warnings([state["demo_notice"]])
with upload_tab:
    st.file_uploader(
        "Bulk expression table: genes x samples or samples x genes (CSV, TSV, TXT, XLSX, h5ad; .gz accepted)",
        type=["csv", "tsv", "txt", "gz", "xlsx", "h5ad"], key="bulk_upload", on_change=app_state.on_bulk_upload,
        help="Raw counts, TPM/CPM or log values. Gene symbols or Ensembl IDs. "
             f"Files up to {st.get_option('server.maxUploadSize')} MB; larger files are refused with a message.",
    )
    with st.expander("A cohort too large to upload (thousands of samples or more)?"):
        st.caption("Uploads are limited in size. The command line takes any size: a file too large for memory "
                   "(h5ad, ARCHS4-layout HDF5, zarr or a samples x genes CSV) is read in sample chunks on its own, "
                   "with the same results and files, resumes if interrupted, and can use a Dask cluster "
                   "(`--scheduler tcp://...`). With the model picked above:")
        st.code(f"blue deconvolve my_cohort.h5ad --model {getattr(model, 'name', None) or 'pbmc'} --out results",
                language="bash")
    st.file_uploader(
        "Optional clinical table: one row per sample, sample ID in the first column (CSV, TSV, XLSX)",
        type=["csv", "tsv", "txt", "gz", "xlsx"], key="clinical_upload", on_change=app_state.on_clinical_upload,
    )
    if state.get("clinical_error"):
        st.error(views.md(state["clinical_error"]), icon=":material/error:")

with saved_tab:
    st.file_uploader("A zip from 'Download this analysis' (sidebar)", type=["zip"], key="analysis_upload",
                     on_change=app_state.on_analysis_upload,
                     help="Reopens the proportions, expression and fit of an earlier session (checked; no code runs).")
    if state.get("analysis_error"):
        st.error(views.md(state["analysis_error"]), icon=":material/error:")
if state.get("bulk_source") == "bundle" and state.get("result") is not None:
    opened = state["result"]
    st.success(f"Opened {views.md(state['bulk_label'])}: {opened.proportions.shape[0]} samples x "
               f"{opened.proportions.shape[1]} cell types (model {views.md(opened.model_name)}). Open **Proportions** "
               "in the sidebar.", icon=":material/folder_open:")
    st.stop()

# 3. input report --------------------------------------------------------------------------------
try:
    bulk, messages, bulk_key = app_state.load_current_bulk(model)
except BlueInputError as err:
    views.show_error(err)
    try:  # the data may suit another model: read them without this model's genes and say which
        raw, _, raw_key = app_state.load_current_bulk(None)
    except BlueInputError:
        st.stop()
    views.show_recommendation(cache.recommend(raw, raw_key), current=getattr(model, "name", None))
    st.stop()
if bulk is None:
    st.info("Load a demo cohort or upload a bulk file to begin.")
    st.stop()
recommendation = cache.recommend(bulk, bulk_key)
if not state.get("model_chosen") and len(recommendation) and bool(recommendation["fits"].iloc[0]) \
        and bool(recommendation["looks_like"].iloc[0]) and recommendation["model"].iloc[0] != getattr(model, "name", None):
    # only to a model whose tissue the data look like (issue 22.2): never on its own to one they merely "pass"
    app_state.follow_recommendation(str(recommendation["model"].iloc[0]))  # the data choose until the user does
    st.rerun()
views.show_recommendation(recommendation, current=getattr(model, "name", None))

st.subheader("3 · Input report")
st.markdown(f"**{views.md(state['bulk_label'])}**")
views.show_input_report(bulk, messages, model)
if state.get("clinical") is not None:
    st.caption(f"Clinical table: {views.md(state['clinical_label'])} — {len(state['clinical'])} samples, "
               f"columns: {', '.join(map(views.md, state['clinical'].columns))}")

# 4. run -----------------------------------------------------------------------------------------
st.subheader("4 · Deconvolve")
if model is None:
    st.info("Pick a model first.")
    st.stop()
adapt = views.adaptation_switch(model, bulk)
run_key = (bulk_key, cache.model_key(model), adapt)
if state.get("result_key") != run_key:
    state["result"] = None
clicked = st.button("Run deconvolution", type="primary", icon=":material/play_arrow:")
auto_run, state["auto_run"] = state["auto_run"], False  # a demo was just loaded
if clicked or (auto_run and state.get("result") is None):
    try:
        state["result"], state["run_warnings"] = cache.run_deconvolution(bulk, bulk_key, model, adapt=adapt)
        state["result_key"] = run_key
    except BlueInputError as err:
        views.show_error(err)
    else:
        st.rerun()  # redraw with the result (and the sidebar's status) in place
result = state.get("result")
if result is not None:
    views.show_adaptation(result)
    views.show_trust(cache.trust_report(bulk, bulk_key, model, result), result)
    views.show_warnings(state.get("run_warnings") or [])
    st.dataframe(result.proportions.round(3), width="stretch", height=240)
