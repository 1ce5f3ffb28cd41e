"""BLUE studio: the Streamlit app. Start with ``streamlit run app.py``.

This file only sets the page frame and the navigation; each page in ``pages/`` is a thin
view over ``blue_core`` and runs on its own (AppTest drives them one by one).
"""

from __future__ import annotations

import os

# The app owns its process (the library never changes a caller's environment): passive OpenMP waiting, because
# torch's spin-waiting threads slow convolutions ~10x on a busy CPU. Before torch is imported; a setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402

from blue_studio import state as app_state, views  # noqa: E402

st.set_page_config(page_title="BLUE studio", page_icon=":material/blur_on:", layout="wide")
app_state.init_state()

pages = [
    st.Page("pages/1_Data_and_model.py", title="Data & model", icon=":material/upload_file:", default=True),
    st.Page("pages/2_Proportions.py", title="Proportions", icon=":material/bar_chart:"),
    st.Page("pages/3_Cell_type_expression.py", title="Cell-type expression", icon=":material/grid_on:"),
    st.Page("pages/4_Subtypes_and_survival.py", title="Subtypes & survival", icon=":material/timeline:"),
    st.Page("pages/5_Enrichment.py", title="Enrichment", icon=":material/hub:"),
    st.Page("pages/6_Train_a_model.py", title="Train a model", icon=":material/model_training:"),
    st.Page("pages/7_About.py", title="About", icon=":material/info:"),
]
navigation = st.navigation(pages)
views.sidebar_status()
navigation.run()
