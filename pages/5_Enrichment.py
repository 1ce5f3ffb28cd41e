"""Enrichment: which pathways are up in one group's predicted cell-type expression (vs the other samples)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from blue_core.analysis import clinical as clinical_rules, tables
from blue_core import plotting

from blue_studio import cache, state as app_state, views
from blue_core.exceptions import BlueInputError

app_state.init_state()
state = st.session_state
st.title("Gene-set enrichment")
result = app_state.require_result()
views.show_verdict_line(*app_state.current_trust())  # the Data & model page's verdict
cell_types = [str(c) for c in result.cell_types]
st.caption("Genes of one cell type's predicted profile are ranked by how much higher they are in the chosen group "
           "than in the other samples; gene sets (Hallmark, Reactome) are tested on that ranking.")

# which groups: subtypes found on the previous page, or a clinical column ------------------------
sources: dict[str, pd.Series] = {}
subtypes = state.get("subtypes") if state.get("subtypes_key") == cache.result_key() else None
if subtypes is not None:
    sources["Subtypes"] = subtypes.labels_
for column in clinical_rules.categorical_columns(state.get("clinical")):
    sources[f"clinical: {column}"] = state["clinical"][column].dropna().astype(str)
if not sources:
    st.info("Find subtypes on **Subtypes & survival** first, or load a clinical table with a grouping column.")
    st.stop()

collections = cache.gene_set_collections()
c1, c2, c3 = st.columns(3)
source = c1.selectbox("Groups from", list(sources), key="enr_source")
labels = sources[source]
group = c2.selectbox("Group (vs the rest)", sorted(labels.unique()), key="enr_group")
cell_type = c3.selectbox("Cell type", cell_types, key="enr_cell_type")
c4, c5 = st.columns([2, 1])
chosen = c4.multiselect("Gene-set collections", list(collections["name"]), default=list(collections["name"]),
                        key="enr_collections",
                        help="; ".join(f"{r.name}: {r.n_sets} sets, {r.source}" for r in collections.itertuples()))
method = c5.radio("Method", ["prerank", "ora"], key="enr_method", horizontal=True,
                  format_func={"prerank": "GSEA prerank", "ora": "over-representation"}.get)
views.show_fraction_dependence(cache.fraction_dependence(result, app_state.current_model()), cell_type,
                               key="enr_dependence")
n_inferred = len(tables.unmeasured_genes(result))
include_inferred = n_inferred > 0 and st.checkbox(
    f"Also rank the {n_inferred:,} genes your data did not measure", value=False, key="enr_include_inferred",
    help="Their profiles are inferred from the other genes, not read from your data.")
submitted = st.button("Run enrichment", type="primary", icon=":material/hub:", key="enr_run",
                      disabled=not chosen)
if state.get("enr_key") != cache.result_key():
    state.pop("enr_table", None)  # computed from another result
if not submitted and "enr_table" not in state:
    st.info("Pick a group and a cell type, then press **Run enrichment**.")
    st.stop()
if submitted:
    try:
        state["enr_table"] = cache.run_enrichment(result, sources[source], group=group, cell_type=cell_type,
                                               collections=chosen, method=method, include_inferred=include_inferred)
        state["enr_key"] = cache.result_key()
    except BlueInputError as err:
        state.pop("enr_table", None)
        views.show_error(err)
        st.stop()
table = state["enr_table"]
attrs = table.attrs
st.subheader(f"{views.md(attrs.get('group'))} vs rest — {views.md(attrs.get('cell_type'))} ({attrs.get('method')})")
st.caption(f"{attrs.get('n_sets_tested')} of {attrs.get('n_sets_total')} gene sets tested (overlap with the "
           f"{attrs.get('n_panel_genes')} genes of the model's GEPs ≥ {attrs.get('min_size')}); "
           f"{attrs.get('n_group')} samples in the group, {attrs.get('n_rest')} in the rest."
           + (f" {attrs['n_inferred_left_out']:,} genes your data did not measure were not ranked."
              if attrs.get("n_inferred_left_out") else ""))
score = "nes" if attrs.get("method") == "prerank" else "odds_ratio"
passing = table[table["fdr"] < 0.05]
if passing.empty:  # nothing is drawn as if it were a finding
    st.info(f"Nothing significant at FDR < 0.05 ({len(table)} gene sets tested). The table below lists them all "
            "for reference; no set is enriched beyond chance.", icon=":material/info:")
else:
    top = passing.head(20).set_index("term")
    views.plot(plotting.bar_table(top, x=score, y="term", color="fdr",
                                  title=f"Gene sets at FDR < 0.05 ({'normalised enrichment score' if score == 'nes' else 'odds ratio'})"),
               name="enrichment", data=top)
st.dataframe(table.dropna(axis=1, how="all"), hide_index=True, width="stretch", key="enr_result")
views.csv_download(table, "enrichment.csv", label="Download enrichment table (CSV)", key="csv_enrichment")
