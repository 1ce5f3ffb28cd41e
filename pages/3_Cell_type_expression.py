"""Cell-type expression: the predicted expression profile (GEP) of each cell type in each sample."""

from __future__ import annotations

import streamlit as st

from blue_core.analysis import clinical as clinical_rules, tables
from blue_core import plotting

from blue_studio import cache, state as app_state, views
from blue_core.exceptions import BlueInputError
from blue_core.analysis.stats import specific_genes, top_genes, zscore
from blue_core.engine.gep_estimators import ESTIMATOR_WORDS

app_state.init_state()
st.title("Cell-type expression")
result = app_state.require_result()
views.show_verdict_line(*app_state.current_trust())  # the Data & model page's verdict
clinical = st.session_state.get("clinical")
cell_types = [str(c) for c in result.cell_types]
genes = [str(g) for g in result.genes]
estimator = (result.input_report or {}).get("gep_estimator", "network")
st.caption(f"BLUE predicts, for every sample, each cell type's own expression profile (GEP) over "
           f"{len(genes):,} genes, in counts per million (CPM). Model **{views.md(result.model_name)}**. How the profiles are "
           f"made: {ESTIMATOR_WORDS.get(estimator) or views.md(estimator)} (the model card's *gep_estimator* says why).")
fitted = (result.input_report or {}).get("gep_cohort_profiles")
if fitted:
    st.caption(f"This run: {views.md(fitted)}. Each sample's profiles therefore depend on the samples uploaded with "
               "it: compare groups that were deconvolved together.")

# genes x samples for one cell type --------------------------------------------------------------
st.subheader("One cell type across samples")
c1, c2, c3 = st.columns([1, 1, 1])
cell_type = c1.selectbox("Cell type", cell_types, key="gep_cell_type")
preset = c2.selectbox("Genes", ["Markers of this cell type (top 30)", "Most variable (top 30)",
                                "Highest expressed (top 30)", "Pick genes ..."], key="gep_preset",
                      help="Markers: genes predicted higher in this cell type than in any other (mean over samples). "
                           "Most variable / highest: from this cell type's predicted profiles across samples.")
scale = c3.radio("Scale", ["z-score per gene", "CPM"], key="gep_scale", horizontal=True,
                 help="z-score: each gene centred and scaled across samples (compares samples). CPM: predicted level.")
gep = result.gep(cell_type)
if preset.startswith("Markers"):
    chosen = specific_genes(tables.mean_profiles(result), cell_type, n=30) or top_genes(gep, n=30, by="mean")
elif preset.startswith("Most variable"):
    chosen = top_genes(gep, n=30, by="variance")
elif preset.startswith("Highest"):
    chosen = top_genes(gep, n=30, by="mean")
else:
    chosen = st.multiselect("Search genes", genes, default=top_genes(gep, n=10, by="variance"), key="gep_genes",
                            placeholder="Type a gene symbol, e.g. INS, CD14, MPO")
if not chosen:
    st.info("Pick at least one gene.")
    st.stop()
shown = zscore(gep[chosen]) if scale.startswith("z") else gep[chosen]
views.plot(plotting.heatmap(views.mark_unmeasured(shown, result).T, title=f"Predicted {cell_type} expression ({scale})",
                   diverging=scale.startswith("z"), colorbar="z" if scale.startswith("z") else "CPM",
                   x_title="sample", y_title="gene"),
        data=gep[chosen], name=f"gep_{cell_type}")
missing = tables.unmeasured_genes(result) & set(chosen)
if missing:
    st.caption(f"† {len(missing)} of these genes were not measured in your data (e.g. "
               f"{', '.join(map(views.md, sorted(missing)[:5]))}): their profiles are inferred from the other genes only.")
views.show_fraction_dependence(cache.fraction_dependence(result, app_state.current_model()), cell_type,
                               key="gep_dependence")

# cell types x genes for one sample --------------------------------------------------------------
st.subheader("One sample across cell types")
samples = [str(s) for s in result.proportions.index]
sample = st.selectbox("Sample", samples, key="gep_sample")
one = tables.sample_profiles(result, sample=sample, genes=chosen)
versus = tables.versus_reference(result, app_state.current_model(), sample=sample, genes=chosen)
view = "Predicted (CPM)"
if versus is not None:
    view = st.radio("Show", ["Predicted (CPM)", "Predicted vs the model's reference mean"], key="gep_view",
                    horizontal=True, help="The reference mean is each cell type's average profile in the single-cell "
                                          "reference the model was trained on: what a prediction without any "
                                          "sample-specific signal would look like.")
if view.startswith("Predicted vs") and versus is not None:
    views.plot(plotting.heatmap(views.mark_unmeasured(versus, result), title=f"{sample}: log2 fold change vs the reference mean",
                       colorbar="log2 FC", diverging=True, x_title="gene", y_title="cell type"),
            data=versus, name=f"sample_vs_reference_{sample}")
    st.caption("Red: higher in this sample's predicted profile than in the reference's average cell of that type; "
               "blue: lower. Values near 0 mean the model has nothing sample-specific to say about the gene.")
else:
    views.plot(plotting.heatmap(views.mark_unmeasured(one, result), title=f"Predicted expression in {sample} (CPM, colour on a log scale)",
                       colorbar="CPM", x_title="gene", y_title="cell type", log_color=True), data=one,
            name=f"sample_{sample}")

# group comparison ------------------------------------------------------------------------------
group_cols = clinical_rules.categorical_columns(clinical)
st.subheader("Compare groups of samples")
if not group_cols:
    st.info("Load a cohort with clinical data (e.g. the pancreas demo) or upload a clinical table to compare groups.")
else:
    default = clinical_rules.guess_column(group_cols, ("hba1c_class2", "t2d", "status", "condition")) or group_cols[0]
    g1, g2 = st.columns(2)
    group_by = g1.selectbox("Group by", group_cols, index=group_cols.index(default), key="gep_group")
    test_type = g2.selectbox("Cell type", cell_types, index=cell_types.index(cell_type), key="gep_test_cell_type")
    t1, t2 = st.columns(2)
    max_fdr = t1.select_slider("FDR threshold", [0.01, 0.05, 0.1, 0.2], value=0.05, key="gep_fdr")
    min_lfc = t2.slider("Minimum |log2 fold change| (effect size)", 0.0, 3.0, 0.5, step=0.25, key="gep_min_lfc",
                        help="A gene counts as different only if it is unlikely by chance (FDR) AND changes enough: "
                             "0.5 = 1.4-fold, 1 = 2-fold (on mean CPM + 1).")
    n_inferred = len(tables.unmeasured_genes(result) & set(genes))
    include_inferred = n_inferred > 0 and st.checkbox(
        f"Also test the {n_inferred:,} genes your data did not measure", value=False, key="gep_include_inferred",
        help="Their profiles are inferred from the other genes, not read from your data; they are marked "
             "'measured_in_input = False' in the table and the download.")
    try:
        table = tables.compare_gep_groups(result, clinical[group_by], cell_type=test_type, max_fdr=max_fdr,
                                          min_abs_log2_fold_change=min_lfc, include_inferred=include_inferred)
        left_out = table.attrs.get("n_inferred_left_out", 0)
        st.caption(f"Per gene, {views.md(test_type)} GEP: {table['test'].iloc[0]} test between the {views.md(group_by)} groups, "
                   f"Benjamini-Hochberg FDR over {len(table):,} genes, and the log2 fold change of mean CPM. "
                   f"Significant = FDR < {max_fdr} and |log2 FC| >= {min_lfc}. Sorted by p-value."
                   + (f" {left_out:,} genes your data did not measure are not tested." if left_out else "")
                   + (" Inferred genes are marked † (measured_in_input = False)." if include_inferred else ""))
        significant = table["significant"]
        if not significant.any():
            st.info(f"No gene differs significantly between the {views.md(group_by)} groups (FDR < {max_fdr} and "
                    f"|log2 FC| >= {min_lfc}; {len(table):,} genes tested). The table below is shown for reference; "
                    "greyed rows do not pass.", icon=":material/info:")
        else:
            st.caption(f"{int(significant.sum()):,} genes pass both thresholds; the others are greyed.")
        st.dataframe(views.mark_unmeasured(table.head(500), result, axis="index").style.apply(
            lambda row: ["" if row["significant"] else "color: #9e9e9e" for _ in row], axis=1),
            width="stretch", key="gep_tests")
        views.csv_download(table, f"gep_tests_{test_type}_{group_by}.csv", key="csv_gep_tests")
        top = list(table.index[significant.to_numpy()][:6])  # only genes that pass: nothing drawn otherwise
        if top:
            views.plot(plotting.group_box(result.gep(test_type)[top], clinical[group_by], value_name="CPM",
                                          title=f"Significant genes of {test_type} by {group_by} (own scale each)",
                                          scale_per_feature=True),
                       name=f"gep_top_{test_type}_{group_by}", data=result.gep(test_type)[top])
    except BlueInputError as err:
        views.show_error(err)

# downloads --------------------------------------------------------------------------------------
st.subheader("Downloads")
d1, d2 = st.columns(2)
with d1:
    views.csv_download(tables.gep_table(result, cell_type=cell_type), f"gep_{cell_type}.csv",
                       label=f"{views.md(cell_type)} GEPs, all genes x samples (CSV; measured_in_input marks inferred genes)",
                       key="csv_gep_all")
with d2:
    st.download_button("All cell types' GEPs + proportions (h5ad)", lambda: cache.anndata_bytes(result.to_anndata()),
                       file_name="expression.h5ad", mime="application/octet-stream", key="dl_h5ad",
                       icon=":material/download:")
