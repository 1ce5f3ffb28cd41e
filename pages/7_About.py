"""About: what BLUE is, how to read each plot, how to cite, and each model's validation."""

from __future__ import annotations

import streamlit as st

from blue_studio import cache, state as app_state, views
from blue_core.exceptions import BlueModelError

app_state.init_state()
st.title("About BLUE studio")
st.markdown(
    """
**BLUE** is a deep network that reads one bulk RNA-seq sample and predicts
(a) the **proportion** of each cell type in it and (b) each cell type's own **expression profile** (GEP)
in that sample. It is trained on pseudo-bulk mixtures simulated from a real, labelled single-cell reference of
the tissue, so each tissue has its own model.

### How to read the plots
- **Proportions (stacked bars):** one bar per sample; the coloured segments are the estimated fractions of its
  cells and add up to 1. Sort by a cell type to see a gradient; group by a clinical column to compare groups.
- **Box plots and tests:** every point is a sample. The table gives a rank test per cell type or gene
  (Mann-Whitney U for two groups, Kruskal-Wallis H for more) and the false discovery rate (FDR, Benjamini-Hochberg)
  over everything tested. FDR < 0.05 is a common threshold; small groups give little power.
- **Fit score:** the correlation between the sample and what the model reconstructs from its predicted
  proportions and profiles. Samples below the line get *caution* in the trust verdict.
- **Trust verdict** (the same words on every results page): *ok*; *caution* (the sample fits the model worse than
  real samples of its tissue, or the ensemble's members disagree); *wrong input* (a tissue check names a cause,
  e.g. whole blood through the PBMC model). Treat caution and wrong-input estimates with care.
- **Adapt to this cohort:** the networks are fine-tuned on your samples before estimating (the shipped model is
  not changed); a sample's fractions then depend on the cohort it came with.
- **Predicted vs measured** (blood demo): each point is one donor and cell type; points on the dashed line are
  exact predictions.
- **Expression heatmaps:** predicted expression of a cell type's genes across samples, either in counts per
  million (CPM) or z-scored per gene (red above that gene's average across samples, blue below).
- **Subtypes:** consensus clustering of patients; *stability* is how often members of a subtype clustered
  together across resamples (1 = always).
- **Kaplan–Meier curves:** the fraction of patients alive over time per subtype, with numbers at risk below.
  The log-rank p tests whether the curves differ; hazard ratios (Cox model, 95% CI) compare each subtype with the
  reference subtype (HR > 1 = higher risk).
- **Enrichment:** gene sets whose genes rank high in one group's predicted cell-type profile (normalised
  enrichment score, NES > 0 = up in the group).

Every chart can be saved as an image with the camera button of its toolbar, and its data as CSV below it.

### How to cite
Zhu, Wang, Bunting & Qiu. BLUE. *PLOS Computational Biology* (2026) — please cite the paper when you use
BLUE's proportions or cell-type expression profiles.
Gene sets: MSigDB Hallmark (Liberzon et al. 2015, CC BY 4.0) and Reactome via MSigDB C2:CP v6.2
(Liberzon et al. 2011; Gillespie et al. 2022). Cite also the single-cell references listed in each model card.
"""
)

st.subheader("Models and their validation")
models = cache.pretrained_models()
if models.empty:
    st.info("No pretrained model is installed.")
for name in models["name"]:
    try:
        model = cache.load_pretrained(str(name))
    except BlueModelError as err:
        views.show_error(err)
        continue
    views.show_model_card(model, expanded=True)
