"""Proportions: cell-type fractions per sample, by clinical group, fit score, flow truth for the demo."""

from __future__ import annotations

import streamlit as st

from blue_core.engine import calibration
from blue_core.analysis import clinical as clinical_rules, tables
from blue_core import plotting

from blue_studio import state as app_state, views
from blue_core.exceptions import BlueInputError
from blue_core.analysis.metrics import accuracy_table
from blue_core.analysis.stats import collapse_columns, compare_groups, correlate

app_state.init_state()
st.title("Cell-type proportions")
result = app_state.require_result()
props = result.proportions
clinical = st.session_state.get("clinical")
truth = st.session_state.get("truth")
model = app_state.current_model()
fractions_of = ((getattr(model, "card", None) or {}).get("fractions_of") if model is not None else None) \
    or "the cells of the cell types this model knows"
st.caption(f"{props.shape[0]} samples x {props.shape[1]} cell types, model **{views.md(result.model_name)}**. "
           "Each bar is one sample; the coloured segments are the fractions of its cells (they sum to 1).")
st.info(f"Fractions of: {views.md(fractions_of)}.", icon=":material/info:")

# stacked bars -----------------------------------------------------------------------------------
left, right = st.columns(2)
sort_by = left.selectbox("Sort samples by", ["(input order)", *map(str, props.columns)], key="prop_sort")
group_cols = clinical_rules.categorical_columns(clinical)
group_by = right.selectbox("Group samples by (clinical column)", ["(none)", *group_cols], key="prop_group",
                           disabled=not group_cols,
                           help="Load a demo cohort with clinical data or upload a clinical table to group samples.")
groups = clinical[group_by] if group_by != "(none)" else None
order = plotting.sample_order(props, sort_by=None if sort_by == "(input order)" else sort_by, groups=groups)
views.plot(plotting.stacked_bar(props, order=order, groups=groups), data=props.loc[order], name="proportions")

# groups ------------------------------------------------------------------------------------------
if groups is not None:
    st.subheader(f"Proportions by {views.md(group_by)}")
    views.plot(plotting.group_box(props, groups, title=f"Cell-type fractions by {group_by}"), name=f"proportions_by_{group_by}",
            data=props.join(groups.rename(group_by), how="left"))
    try:
        table = compare_groups(props, groups)
        st.caption("Per cell type: rank test between groups (Mann-Whitney U for two groups, Kruskal-Wallis H "
                   "for more) and Benjamini-Hochberg FDR over cell types.")
        st.dataframe(table, width="stretch", key="prop_tests")
        views.csv_download(table, f"proportion_tests_{group_by}.csv", key="csv_prop_tests")
    except BlueInputError as err:
        views.show_error(err)

covariates = clinical_rules.numeric_columns(clinical)
if covariates:
    st.subheader("Proportions against a clinical measurement")
    covariate = st.selectbox("Clinical measurement", covariates, key="prop_covariate",
                             index=covariates.index(clinical_rules.guess_column(covariates, ("hba1c",)) or covariates[0]))
    try:
        table = correlate(props, clinical[covariate], method="spearman")
        views.plot(plotting.scatter_vs(props, clinical[covariate], covariate_name=covariate,
                              title=f"Cell-type fraction vs {covariate}"),
                name=f"proportions_vs_{covariate}", data=props.join(clinical[covariate], how="left"))
        st.caption("Spearman rank correlation per cell type, Benjamini-Hochberg FDR over cell types.")
        st.dataframe(table, width="stretch", key="prop_corr")
        views.csv_download(table, f"proportion_correlation_{covariate}.csv", key="csv_prop_corr")
    except BlueInputError as err:
        views.show_error(err)

# truth (demo with flow cytometry) -------------------------------------------------------------
if truth is not None:
    with st.container(border=True, key="truth_section"):
        st.subheader("Predicted vs measured (flow cytometry)")
        st.caption("The measured fractions come from flow cytometry of the same donors; the model's cell types and the "
                   "flow panel's may be named or split differently.")
        samples = [s for s in order if s in truth.index]
        t1, t2 = st.columns(2)
        with t1:
            views.plot(plotting.stacked_bar(props.loc[samples], title="Predicted by BLUE"), data=props.loc[samples],
                    name="predicted_for_truth")
        with t2:
            views.plot(plotting.stacked_bar(truth.loc[samples], title="Measured (flow cytometry)",
                                       color_names=list(props.columns)), data=truth.loc[samples],
                    name="measured_flow")
        mapping = tables.truth_mapping(st.session_state.get("cohort_info"), result.model_name)
        predicted, measured = props, truth
        if mapping is not None:  # put both on the cohort card's documented common vocabulary
            predicted, measured = collapse_columns(props, mapping[0]), collapse_columns(truth, mapping[1])
            st.caption("Compared on the common cell types documented in the cohort card: "
                       + "; ".join(f"{views.md(k)} → {views.md(v)}" for k, v in mapping[0].items() if v) + " (model) and "
                       + "; ".join(f"{views.md(k)} → {views.md(v)}" for k, v in mapping[1].items() if v)
                       + " (flow); each side renormalised to 1.")
        shared = [c for c in predicted.columns if c in measured.columns]
        if shared:
            agreement = accuracy_table(measured.loc[samples, shared], predicted.loc[samples, shared])
            m1, m2, m3 = st.columns(3)
            m1.metric("CCC", f"{agreement.loc['all', 'ccc']:.2f}",
                      help="Concordance correlation: agreement with the measured fractions, 1 = identical, 0 = none; "
                           "penalises both scatter and bias.")
            m2.metric("Pearson r", f"{agreement.loc['all', 'pearson_r']:.2f}",
                      help="Linear correlation of predicted and measured fractions (ignores a constant bias).")
            m3.metric("RMSE", f"{agreement.loc['all', 'rmse']:.3f}",
                      help="Root-mean-square difference of predicted and measured fractions (0 = exact).")
            st.caption("Over every donor x cell type pair; per cell type in the table below. CCC: agreement "
                       "(1 = identical); Pearson r: correlation across donors; RMSE: typical error in fraction units.")
            st.dataframe(agreement.round(3), width="stretch", key="truth_accuracy")
            views.plot(plotting.truth_vs_prediction(predicted, measured,
                                           title="Measured vs predicted: one point per donor and cell type"),
                    name="predicted_vs_measured",
                    data=predicted.loc[samples, shared].add_suffix(" predicted").join(
                        measured.loc[samples, shared].add_suffix(" measured")))
            side = predicted.loc[samples, shared].round(3).add_suffix(" · BLUE").join(
                measured.loc[samples, shared].round(3).add_suffix(" · flow"))
            st.dataframe(side[[f"{c} · {w}" for c in shared for w in ("BLUE", "flow")]], width="stretch", key="truth_table")

# fit -------------------------------------------------------------------------------------------
st.subheader("How well each sample is explained")
fit = result.fit
report = getattr(result, "input_report", None) or {}
threshold = report.get("fit_r_threshold")
real_floor = report.get("fit_r_threshold_basis") == "real cohorts"
views.plot(plotting.fit_bar(fit, threshold=threshold), data=fit, name="fit_score")
if threshold is not None:
    st.caption(f"fit r: correlation between the input and the mixture the model reconstructs from its proportions "
               f"and cell-type profiles. The line at {threshold:.2f} is "
               + (f"{calibration.REAL_FLOOR_WORDS} (measured on real cohorts)."
                  if real_floor else
                  "the fit that 99 % of this model's simulated validation mixtures reach; real bulk fits worse than "
                  "simulations, so expect real samples below it (this model has no real-cohort calibration)."))
trust_table, trust_summary = app_state.current_trust()
views.show_verdict_line(trust_table, trust_summary)  # one verdict, in the Data & model page's words

# intervals (ensemble models) ---------------------------------------------------------------------
if getattr(result, "proportions_lo", None) is not None:
    st.subheader("Uncertainty: 90 % intervals")
    st.caption("This model is an ensemble: its members' disagreement and the error they make on held-out cells give "
               "each proportion a 90 % interval (error bars). A sample whose members disagree more than on real samples "
               "of the model's tissue gets 'caution' in the trust verdict above.")
    sample = st.selectbox("Sample", [str(s) for s in props.index], key="prop_interval_sample")
    views.plot(plotting.interval_bars(result, sample), data=plotting.interval_table(result, sample), name="proportion_intervals")

# table ------------------------------------------------------------------------------------------
st.subheader("Table")
table = result.proportions_table().join(fit, how="left") if hasattr(result, "proportions_table") \
    else props.join(fit, how="left")
if trust_table is not None and "verdict" in trust_table and "verdict" not in table:  # the verdict travels with the CSV
    table = table.join(trust_table[["verdict", "reasons"]], how="left")
st.dataframe(table, width="stretch", key="prop_table")
views.csv_download(table, "proportions.csv", label="Download proportions (CSV)", key="csv_proportions")
