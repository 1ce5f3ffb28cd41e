"""Subtypes & survival: cluster patients on predicted cell-type expression (or proportions), compare
their survival (Kaplan-Meier, log-rank, Cox) and validate the subtypes on a second cohort."""

from __future__ import annotations

import streamlit as st

from blue_core.analysis import clinical as clinical_rules, tables

from blue_studio import cache, state as app_state, views
from blue_core.io.datasets import validation_cohorts
from blue_core.exceptions import BlueInputError

app_state.init_state()
state = st.session_state
st.title("Subtypes & survival")
result = app_state.require_result()
views.show_verdict_line(*app_state.current_trust())  # the Data & model page's verdict
clinical = state.get("clinical")
cell_types = [str(c) for c in result.cell_types]
st.caption("Patients are grouped by consensus clustering of their predicted cell-type expression profiles "
           "(GEPs) or of their cell-type proportions. Subtypes are then compared for survival.")

# clustering -------------------------------------------------------------------------------------
with st.form("subtype_form"):
    c1, c2, c3 = st.columns([1, 2, 1])
    features = c1.radio("Cluster on", ["gep", "proportions"], key="sub_features",
                        format_func={"gep": "Cell-type expression (GEPs)", "proportions": "Proportions"}.get)
    chosen = c2.multiselect("Cell types", cell_types, default=cell_types, key="sub_cell_types",
                            help="GEPs (or proportions) of these cell types are the clustering features.")
    k = c3.selectbox("Number of subtypes (k)", ["auto", 2, 3, 4, 5, 6], index=0, key="sub_k",
                     help="auto: k with the most stable consensus (lowest PAC) between 2 and 6 -- the same rule as "
                          "`blue subtypes` without --k.")
    submitted = st.form_submit_button("Find subtypes", type="primary", icon=":material/scatter_plot:")
if submitted:
    try:
        state["subtypes"] = cache.fit_subtypes(result, features=features, cell_types=chosen or cell_types,
                                            k=None if k == "auto" else int(k))
        state["subtypes_key"] = cache.result_key()
        state["validation"] = None
    except BlueInputError as err:
        views.show_error(err)
subtypes = state.get("subtypes") if state.get("subtypes_key") == cache.result_key() else None
if subtypes is None:
    st.info("Choose the features and k, then press **Find subtypes**.")
    st.stop()

labels = subtypes.labels_
st.subheader(f"{subtypes.k_} subtypes")
s1, s2 = st.columns([1, 2])
with s1:
    st.dataframe(subtypes.summary, hide_index=True, width="stretch", key="sub_summary")
    views.csv_download(labels.rename("subtype").to_frame(), "subtypes.csv", label="Download subtypes (CSV)",
                    key="csv_subtypes")
with s2:
    st.caption("**stability**: mean consensus within the subtype (1 = always clustered together over resamples).  \n"
               "**PAC** (proportion of ambiguous clustering): the share of sample pairs clustered together in "
               "between 10 % and 90 % of the resamples -- lower is more stable; 'auto' picks the k with the lowest.  \n"
               "**silhouette**: how much closer samples are to their own subtype than to the next one (-1 to 1; "
               "above about 0.25 the groups are separated).")
    if hasattr(subtypes, "k_scores_"):
        st.dataframe(subtypes.k_scores_, hide_index=True, width="stretch", key="sub_kscores")
for text in subtypes.support_warnings():
    st.warning(views.md(text), icon=":material/warning:")
views.plot(subtypes.plot_heatmap(), name="subtype_heatmap", data=subtypes.data_[subtypes.top_features(40)])

# survival ---------------------------------------------------------------------------------------
st.subheader("Survival by subtype")
times, events = clinical_rules.survival_columns(clinical)
time_default = clinical_rules.guess_column(times, clinical_rules.TIME_COLUMNS)
event_default = clinical_rules.guess_column(events, clinical_rules.EVENT_COLUMNS)
manual = False
if not (time_default and event_default):
    st.info("Survival needs a clinical table with a follow-up time column and an event column (1 = death), "
            "e.g. `os_days` and `os_event`: load the AML demo or upload a clinical table on **Data & model**.")
    manual = bool(times and events) and st.checkbox("Pick the time and event columns myself", key="surv_manual")
    if not manual:
        st.stop()
t1, t2 = st.columns(2)
time_col = t1.selectbox("Follow-up time", times, index=times.index(time_default or times[0]), key="surv_time")
event_col = t2.selectbox("Event (1 = death)", events, index=events.index(event_default or events[0]), key="surv_event")
try:
    survival = cache.fit_survival(labels, clinical, time_col=time_col, event_col=event_col)
    state["survival"] = survival  # goes into 'Download this analysis'
except BlueInputError as err:
    views.show_error(err)
    st.stop()
m1, m2, m3 = st.columns(3)
m1.metric("Log-rank p", f"{survival.logrank_p_:.3g}")
m2.metric("Patients used", survival.n_matched_)
m3.metric("Events", int(survival.data_["event"].sum()))
for note in survival.notes_:
    st.caption(f"Note: {views.md(note)}")
views.plot(survival.plot_km(), name="kaplan_meier", data=survival.data_)
st.markdown("**Cox hazard ratios and median survival** (vs the reference subtype "
            f"{views.md(survival.reference_)}; 95% CI; median survival empty = not reached)")
f1, f2 = st.columns([3, 2])
with f1:
    summary = tables.survival_table(survival)
    st.dataframe(summary, hide_index=True, width="stretch", key="surv_summary")
    views.csv_download(summary, "survival_summary.csv", key="csv_surv_summary")
with f2:
    views.plot(survival.plot_forest(), name="hazard_ratios",
            data=survival.summary.set_index("group")[["hr", "hr_lower", "hr_upper", "hr_p"]])
with st.expander("Pairwise log-rank tests and numbers at risk"):
    st.dataframe(tables.pairwise_table(survival), hide_index=True, width="stretch", key="surv_pairwise")
    st.caption("Patients still followed (alive and not censored) at each time:")
    st.dataframe(tables.at_risk_table(survival), width="stretch", key="surv_at_risk")

# cross-cohort validation ------------------------------------------------------------------------
st.subheader("Validate in other cohorts")
model = app_state.current_model()
others = validation_cohorts(getattr(model, "name", ""), exclude=state.get("demo_name")) if model is not None else []
if model is None or not others:
    st.caption("Validation uses bundled demo cohorts meant for the same model (same cell types and genes) with "
               "survival data; there is none for this model.")
    st.stop()
st.caption("Each cohort's patients are assigned to the subtypes found here (nearest centroid), then survival is "
           "compared there. A split **replicates** when the log-rank p, Holm-adjusted over the cohorts tested "
           "together, is below 0.05 **and** the subtype with the best survival here is also the best there.")
chosen = st.multiselect("Validation cohorts (same model)", others, default=others, key="val_cohorts")
label = f"Validate in {len(chosen)} cohort{'s' if len(chosen) != 1 else ''}"
if st.button(label, type="primary", key="val_run", icon=":material/verified:", disabled=not chosen):
    try:
        state["validation"] = cache.validate_on_cohorts(chosen, model, subtypes, discovery=result, survival=survival,
                                                        time_col=time_col, event_col=event_col)
    except BlueInputError as err:
        views.show_error(err)
validations = state.get("validation") or []
if validations:
    best = validations[0].discovery_best
    st.markdown(f"Best survival here: subtype **{views.md(best)}**. Results in {len(validations)} cohort(s):")
    st.dataframe(tables.validation_table(validations), hide_index=True, width="stretch", key="val_table")
    n_rep = sum(v.replicated for v in validations)
    if n_rep:
        st.success(f"The split replicates in {n_rep} of {len(validations)} cohort(s).", icon=":material/check_circle:")
    else:
        st.warning(f"The split does not replicate in any of the {len(validations)} cohort(s) tested.",
                   icon=":material/warning:")
    tabs = st.tabs([views.md(v.title) for v in validations])
    for tab, validation in zip(tabs, validations):
        with tab:
            val = validation.survival
            if validation.replicated:
                st.success(views.md(validation.verdict), icon=":material/check_circle:")
            else:
                st.warning(views.md(validation.verdict), icon=":material/warning:")
            st.caption(f"Assigned on {validation.n_features} shared features; {val.n_matched_} patients used.")
            views.plot(val.plot_km(title=f"Validation: {validation.title}"), name=f"kaplan_meier_validation_{validation.title}",
                       data=val.data_)
            st.dataframe(tables.survival_table(val), hide_index=True, width="stretch")
