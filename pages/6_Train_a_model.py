"""Train a model: a BLUE model for your own tissue from a labelled single-cell reference."""

from __future__ import annotations

import re

import streamlit as st

from blue_core.analysis import clinical as clinical_rules
from blue_core import plotting

from blue_studio import cache, state as app_state, views
from blue_core.exceptions import BlueInputError
from blue_core.io.files import MODEL_NAME_RULE, check_model_name

app_state.init_state()
state = st.session_state
st.title("Train a model")
st.caption("BLUE learns from pseudo-bulk mixtures simulated from a labelled single-cell reference. Upload one "
           "(an AnnData .h5ad file: cells x genes raw counts, with a cell-type column), check the cell counts, "
           "train, then use the model at once or download it.")

with st.expander("Load a model you trained before (its zip)", expanded=False):
    st.file_uploader("Model zip (from 'Download the model')", type=["zip"], key="model_zip_upload",
                     on_change=app_state.on_model_zip_upload,
                     help="The zip holds model.json and model.safetensors; both are checked before the model is used "
                          "(no code is run from it).")
    if state.get("model_zip_error"):
        st.error(views.md(state["model_zip_error"]), icon=":material/error:")

st.file_uploader("Single-cell reference (.h5ad)", type=["h5ad"], key="reference_upload",
                 on_change=app_state.on_reference_upload, help=f"Raw counts, human gene symbols. Files up to {st.get_option('server.maxUploadSize')} MB.")
if not state.get("ref_bytes"):
    if not views.show_trained_model(state.get("last_trained")):
        st.info("Upload a single-cell reference to begin.")
    st.stop()

try:
    obs = cache.reference_obs(state["ref_bytes"])
except BlueInputError as err:
    views.show_error(err)
    st.stop()
columns = [str(c) for c in obs.columns]
if not columns:
    st.error("This .h5ad file has no cell annotations (obs has no columns). Add a cell-type column first.")
    st.stop()
c1, c2 = st.columns(2)
cell_type_key = c1.selectbox("Cell-type column", columns, key="train_ct_key",
                             index=columns.index(clinical_rules.guess_column(columns, ("cell_type", "celltype", "cell_types",
                                                                          "labels", "cluster")) or columns[0]))
donor_options = ["(none)", *[c for c in columns if c != cell_type_key]]
donor_key = c2.selectbox("Donor column (optional: keeps donors apart between training and validation)",
                         donor_options, key="train_donor_key",
                         index=donor_options.index(clinical_rules.guess_column(donor_options, ("donor", "patient", "individual",
                                                                                   "sample")) or "(none)"))
try:
    reference, messages = cache.read_reference_upload(state["ref_bytes"], state["ref_filename"],
                                                    cell_type_key=cell_type_key,
                                                    donor_key=None if donor_key == "(none)" else donor_key)
except BlueInputError as err:
    views.show_error(err)
    st.stop()
views.show_warnings(messages)
counts = reference.obs["cell_type"].value_counts().rename("cells").to_frame()
m1, m2, m3 = st.columns(3)
m1.metric("Cells", f"{reference.n_obs:,}")
m2.metric("Genes", f"{reference.n_vars:,}")
m3.metric("Cell types", len(counts))
left, right = st.columns([1, 2])
left.dataframe(counts, width="stretch", key="train_counts")
with right:
    views.plot(plotting.bar_table(counts, x="cells", y="cell_type", title="Cells per cell type"), data=counts,
            name="reference_cell_counts")

st.subheader("Training settings")
with st.form("train_form"):
    s1, s2 = st.columns(2)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", str(state.get("ref_filename") or "model").rsplit(".", 1)[0])[:40]
    name = s1.text_input("Model name", value=f"my-{stem}", key="train_name", max_chars=64,
                         help=f"A short name, not a path: {MODEL_NAME_RULE}. The model stays in this session "
                              "(download it below); nothing is saved on the server.")
    tissue = s2.text_input("Tissue", value="", key="train_tissue", placeholder="e.g. lung")
    s3, s4 = st.columns(2)
    n_samples = s3.slider("Pseudo-bulk training samples", 200, 8000, 4000, step=100, key="train_n_samples",
                          help="More samples: better models, longer training.")
    epochs = s4.slider("Epochs per branch (training stops early when validation stops improving)", 1, 40, 20,
                       key="train_epochs")
    start = st.form_submit_button("Train", type="primary", icon=":material/model_training:")

if start:
    try:
        model_name = check_model_name(name.strip() or "my-model")
    except BlueInputError as err:
        views.show_error(err)
        st.stop()
    st.button("Cancel training", key="train_cancel", icon=":material/cancel:")
    try:
        model = cache.train_with_progress(
            reference, n_samples=int(n_samples), epochs=int(epochs), proportion_epochs=int(epochs), name=model_name,
            tissue=tissue or None, description=f"Trained in BLUE studio on {state.get('ref_filename')}",
            provenance={"reference_file": state.get("ref_filename"), "cell_type_column": cell_type_key,
                        "donor_column": None if donor_key == "(none)" else donor_key},
        )
    except BlueInputError as err:
        views.show_error(err)
        st.stop()
    state["trained_models"][model.name] = model
    state["last_trained"] = model.name
elif state.get("train_cancel"):
    st.warning("Training cancelled.", icon=":material/cancel:")

views.show_trained_model(state.get("last_trained"))
