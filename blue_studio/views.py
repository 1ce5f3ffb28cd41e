"""Widgets and messages: escaping of user text, figures shown with their data, model card, input report."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from blue_core.engine import calibration
from blue_core.io.files import write_csv
from blue_core.io import report_words
from blue_core.analysis.tables import unmeasured_genes

from .state import model_label, use_model

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from blue_core.engine.result import Deconvolution
    from blue_core.engine.model import BlueModel

__all__ = ["show_error", "show_warnings", "csv_download", "mark_unmeasured", "md", "safe_figure", "plot", "sidebar_status", "card_table", "show_model_card", "show_input_report"]


def show_error(err: BaseException) -> None:
    """Show a user error as a clear message (never a traceback)."""
    st.error(md(err), icon=":material/error:")


def show_warnings(messages: Sequence[str]) -> None:
    """Show warning texts (they quote file, gene and sample names: shown as plain text)."""
    for text in messages:
        st.warning(md(text), icon=":material/warning:")


def csv_download(frame: pd.DataFrame, filename: str, *, label: str = "Download data (CSV)", key: str | None = None) -> None:
    """A download button for ``frame`` as CSV (index included)."""
    st.download_button(
        label,
        write_csv(frame).encode("utf-8"),  # spreadsheet-safe (issue 26.3)
        file_name=filename,
        mime="text/csv",
        key=key or f"csv_{filename}",
        icon=":material/download:",
    )


def mark_unmeasured(frame: pd.DataFrame, result: Deconvolution, *, axis: str = "columns") -> pd.DataFrame:
    """``frame`` with ``" †"`` appended to the names of genes (columns or index) the input did not measure."""
    missing = unmeasured_genes(result)
    if not missing:
        return frame
    rename = {g: f"{g} †" for g in (frame.columns if axis == "columns" else frame.index) if g in missing}
    return frame.rename(columns=rename) if axis == "columns" else frame.rename(index=rename)


def show_fraction_dependence(table: pd.DataFrame, cell_type: str, *, key: str) -> None:
    """The plain sentence of how much of ``cell_type``'s profile follows its fraction, and every type's share in an
    expander (``table``: ``blue_core.analysis.leakage.result_dependence``)."""
    if cell_type in table.index:
        row = table.loc[cell_type]
        share = row["share_following"]
        text = md(row["words"])
        if pd.notna(share) and share >= 0.5:
            st.warning(text, icon=":material/link:")
        else:
            st.caption(text)
    with st.expander("How much of each cell type's profile follows its fraction"):
        shown = pd.DataFrame({"samples with the type": table["n_samples"], "marker genes": table["n_genes"],
                              "share of the variation that follows the fraction": table["share_following"].round(2),
                              "median r with the fraction": table["median_r"].round(2)})
        st.dataframe(shown, width="stretch", key=key)
        st.caption("Per cell type, over its marker genes (those most specific to it in the model's reference), the "
                   "correlation across your samples between its predicted profile (log scale) and its predicted "
                   "fraction; the share is the median r². A high share means differences between samples mostly "
                   "track how many of these cells there are, not a change in what they express. Genes your data "
                   "did not measure are not counted.")


_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|www|mailto)(?=\\[:.])")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:@=&^\"'])")


def md(text: object) -> str:
    """User-supplied text (file, sample, gene, cell-type, column or model names; messages quoting them)
    made safe to put inside Markdown: every Markdown/Streamlit special character is backslash-escaped,
    so ``![x](http://...)`` or ``[link](...)`` show as typed and never become an image, a link, an
    autolink, a colour directive or a formula (a zero-width space after ``http``/``www`` stops the
    renderer's bare-URL autolinks). Newlines become spaces."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))
    return _AUTOLINK.sub("\\1\u200b", escaped)  # a zero-width space: the renderer's autolinker sees no URL


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
    config = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": name, "scale": 2}}
    st.plotly_chart(safe_figure(fig), width="stretch", config=config, key=key or f"fig_{name}")
    if data is not None:
        csv_download(data, f"{name}.csv", label="Download chart data (CSV)", key=f"chartcsv_{key or name}")


def sidebar_status() -> None:
    """A short summary, in the sidebar, of what is loaded (data, model, result)."""
    state = st.session_state
    with st.sidebar:
        st.caption("Current session")
        st.markdown(
            f"**Data:** {md(state.get('bulk_label') or '—')}  \n"
            f"**Model:** {md(model_label(state['model_name']) if state.get('model_name') else '—')}  \n"
            f"**Clinical:** {md(state.get('clinical_label') or '—')}  \n"
            f"**Result:** {'ready' if state.get('result') is not None else '—'}"
        )
        if state.get("result") is not None:
            from .export import analysis_zip
            from .state import analysis_inputs

            st.download_button("Download this analysis (zip)", analysis_zip(**analysis_inputs()),
                               file_name="blue_analysis.zip",
                               mime="application/zip", key="download_analysis", icon=":material/download:",
                               help="Proportions, cell-type expression, fit and trust verdicts, subtypes and survival "
                                    "(when found), with the names of the inputs and the model. Reopen it on Data & "
                                    "model, tab 'Saved analysis'.")


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
    rows = [(k, cell_text(v)) for k, v in flat.items() if k]
    return pd.DataFrame(rows, columns=["item", "value"])


def cell_text(value: Any, *, missing: str = "not recorded") -> str:
    """A table cell as text: floats to 3 significant digits, None and NaN as ``missing`` (never "None"/"nan")."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return missing
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def real_validation_table(rows: Any) -> pd.DataFrame:
    """A card's ``real_data_validation`` rows (metric, blue, nnls_baseline) for display: every cell filled."""
    frame = pd.DataFrame(rows)
    out = pd.DataFrame({"metric": frame["metric"].astype(str)}) if "metric" in frame else pd.DataFrame(index=frame.index)
    for column, title in (("blue", "BLUE"), ("nnls_baseline", "NNLS baseline")):
        if column in frame:
            out[title] = [cell_text(v, missing="not computed") for v in frame[column]]
    for column in frame.columns.difference(["metric", "blue", "nnls_baseline"]):
        out[str(column)] = [cell_text(v) for v in frame[column]]
    return out


def show_model_card(model: BlueModel, *, expanded: bool = True) -> None:
    """The model card: tissue, cell types, genes, training data, validation numbers."""
    card = getattr(model, "card", {}) or {}
    with st.expander(f"Model card: {md(getattr(model, 'name', ''))}", expanded=expanded):
        if card.get("description"):
            st.markdown(md(card["description"]))
        if card.get("limitations"):
            st.warning(f"**Known limitations (from validation):** {md(card['limitations'])}")
        cols = st.columns(4)
        cols[0].metric("Tissue", md(card.get("tissue") or "—"))  # card fields are user text (issue 26.2)
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
                st.dataframe(real_validation_table(real), hide_index=True, width="stretch")
            st.markdown("**Validation on simulated mixtures** (pseudo-bulk from held-out cells, not real bulk: "
                        "an upper bound on real-data accuracy)")
            validation = card.get("validation")
            if validation:
                st.dataframe(card_table(validation), hide_index=True, width="stretch")
            else:
                st.caption("No validation numbers recorded in this model's card.")


def show_input_report(bulk: Any, messages: Sequence[str], model: BlueModel | None = None) -> None:
    """The input report of ``read_bulk``: samples, genes, units, genes matched, every warning.

    "Model genes found" comes from ``model.match_genes`` (the rule ``deconvolve`` decides with), so a
    multi-panel model shows the genes of the panel it will read.
    """
    report = dict(bulk.uns.get("blue_input", {}) or {})
    if model is not None and hasattr(model, "match_genes"):
        match = model.match_genes(bulk.var_names)
        report.update(n_model_genes=match.n_expected, n_model_genes_matched=match.n_matched)
    cols = st.columns(5)
    cols[0].metric("Samples", f"{report.get('n_samples', bulk.n_obs):,}")
    cols[1].metric("Genes", f"{report.get('n_genes', bulk.n_vars):,}")
    cols[2].metric("Units detected", report_words("units", report.get("units", "—")))
    cols[3].metric("Gene IDs", report_words("gene_id_type", report.get("gene_id_type", "—")))
    if report.get("n_model_genes"):
        matched, total = report.get("n_model_genes_matched", 0), report["n_model_genes"]
        cols[4].metric("Model genes found", f"{matched:,} / {total:,}", f"{100 * matched / total:.0f}%",
                       delta_color="off")
    else:
        cols[4].metric("Model genes found", "—")
    details = {"file": report.get("source"), "layout": report_words("orientation", report.get("orientation")),
               "duplicated gene rows summed": report.get("n_duplicates_summed")}
    details = {k: v for k, v in details.items() if v not in (None, "None", "")}
    if details:
        st.caption(" · ".join(f"{k}: {md(v)}" for k, v in details.items()))
    show_warnings(messages)
    missing = report.get("missing_model_genes")
    if missing:
        with st.expander(f"{len(missing):,} model genes missing from the data"):
            st.text(", ".join(map(str, list(missing)[:500])) + (" ..." if len(missing) > 500 else ""))


def adaptation_switch(model: BlueModel, bulk: Any) -> bool:
    """The "Adapt to this cohort" switch (``deconvolve(adapt=...)``); returns whether adaptation is asked for.

    Off and disabled, with the reason, when the model carries no simulation bank or the cohort is smaller than
    adaptation needs; otherwise on by default where the model's default adapts (``adaptation.default_adapt``).
    """
    from blue_core.engine.adaptation import MIN_SAMPLES
    from blue_core.engine.adaptation import default_adapt

    n = int(getattr(bulk, "n_obs", 0))
    reason = ""
    if getattr(model, "adaptation_bank", None) is None:
        reason = (f"model {md(model.name)} carries no simulation bank (it was saved before banks existed; retrain "
                  "it, or add one with blue train --recipe FILE --out DIR --bank-only)")
    elif n < MIN_SAMPLES:
        reason = f"adaptation needs at least {MIN_SAMPLES} samples of one cohort; these data have {n}"
    on = st.toggle("Adapt to this cohort", value=bool(default_adapt(model)) and not reason, disabled=bool(reason),
                   key="adapt_switch_off" if reason else "adapt_switch",
                   help="Fine-tunes a copy of the model's networks on these samples before estimating (the shipped "
                        "model is not changed): corrects errors the whole cohort shares, e.g. from its platform. A "
                        "sample's fractions then depend on the cohort it came with. Takes about 5 s per network "
                        "for a dozen samples.")
    if reason:
        st.caption(f"Adaptation is off: {reason}.")
    return bool(on) and not reason


def show_adaptation(result: Any) -> None:
    """Says whether the shown result was adapted to its cohort (``adaptation.adaptation_text``)."""
    from blue_core.engine.adaptation import adaptation_text

    text = adaptation_text((getattr(result, "input_report", None) or {}).get("adaptation"))
    if text:
        st.info(md(text[0].upper() + text[1:] + "."), icon=":material/tune:")


def show_recommendation(ranking: pd.DataFrame, *, current: str | None) -> None:
    """Which installed model fits the loaded data (``blue_core.analysis.trust.recommend_model``), with a switch button."""
    if ranking is None or not len(ranking):
        return
    best = ranking.iloc[0]
    if not bool(best["readable"]):
        st.error("None of the installed models can read these data (too few of their genes are measured). "
                 "Upload a whole-transcriptome table or train a model on a reference with these genes.",
                 icon=":material/error:")
        return
    name = str(best["model"])
    if not bool(best.get("fits", True)):
        st.warning("No installed model fits these data: none of their tissues is what the samples look like "
                   f"(closest: **{md(name)}** — {md(best['reason'])}). Read every result with caution, or train a "
                   "model on a reference of this tissue (page Train a model).", icon=":material/help:")
        return
    text = f"Recommended for these data: **{md(name)}** — {md(best['reason'])}."
    if name == current:
        st.caption(text + " (This is the model in use.)")
        return
    left, right = st.columns([4, 1])
    left.info(text, icon=":material/recommend:")
    right.button(f"Use {name}", key="use_recommended", on_click=use_model, args=(name,), type="primary")


VERDICTS = ("ok", "caution", "wrong input")


def verdict_counts_text(table: pd.DataFrame) -> str:
    """``"10 ok, 2 caution, 0 wrong input"``: the one way verdict counts are written in the app."""
    counts = table["verdict"].value_counts() if table is not None and "verdict" in table else pd.Series(dtype=int)
    return ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS)


def show_verdict_line(table: pd.DataFrame | None, summary: str | None = None) -> None:
    """The trust verdict on a results page, in the words of the Data & model page (issue 22.4): counts of ok /
    caution / wrong input, the summary, and which samples are not ok; nothing when no verdict exists."""
    if table is None or "verdict" not in table:
        st.caption("No trust verdict for this result (it was reopened from a file without one).")
        return
    text = f"Trust verdict: {verdict_counts_text(table)}." + (f" {md(summary)}" if summary else "")
    flagged = table.index[table["verdict"] != "ok"]
    if len(flagged):
        text += (" Not ok: " + ", ".join(map(md, map(str, flagged[:12]))) + (" ..." if len(flagged) > 12 else "")
                 + " (reasons on Data & model).")
    _verdict_box(table, text)


def _verdict_box(table: pd.DataFrame, text: str) -> None:
    """``text`` in the colour of the table's worst verdict (error / warning / success)."""
    verdicts = set(table["verdict"])
    if "wrong input" in verdicts:
        st.error(text, icon=":material/report:")
    elif verdicts - {"ok"}:
        st.warning(text, icon=":material/warning:")
    else:
        st.success(text, icon=":material/check_circle:")


def show_trust(report: Any, result: Deconvolution) -> None:
    """The trust verdict of a result: one line in the colour of the worst case, and the reasons per sample."""
    counts = report.counts
    n = len(report.table)
    text = (f"Deconvolved {n} samples into {result.proportions.shape[1]} cell types with model "
            f"**{md(result.model_name)}**. {md(report.summary)} ({verdict_counts_text(report.table)}.) Open "
            "**Proportions** in the sidebar.")
    _verdict_box(report.table, text)
    flagged = report.table[report.table["verdict"] != "ok"]
    if len(flagged):
        with st.expander(f"Why {len(flagged)} sample(s) are not 'ok'", expanded=bool(counts["wrong input"])):
            st.caption("Verdicts are calibrated on real bulk cohorts of each model's tissue (bench/results/trust.md): "
                       "'wrong input' = a tissue check names a cause; 'caution' = the fit is below "
                       f"{calibration.REAL_FLOOR_WORDS}, or the ensemble members disagree more than "
                       f"{calibration.REAL_SPREAD_WORDS}.")
            st.dataframe(flagged[["verdict", "fit_r", "reasons"]], width="stretch", key="trust_table")


def show_trained_model(name: str | None) -> bool:
    """A model trained (or loaded from its zip) in this session: summary, card, 'use' and 'download' buttons.

    Returns
    -------
    bool
        Whether there was such a model to show.
    """
    from .cache import model_zip_bytes
    from .state import TRAINED_PREFIX, use_trained_model

    model = st.session_state.get("trained_models", {}).get(name) if name else None
    if model is None:
        return False
    st.success(f"Model **{md(model.name)}** is ready: {len(model.cell_types)} cell types, "
               f"{len(model.input_genes):,} input genes, {len(model.output_genes):,} output genes.",
               icon=":material/check_circle:")
    show_model_card(model, expanded=False)
    b1, b2 = st.columns(2)
    b1.button("Use this model now", type="primary", key="train_use", on_click=use_trained_model,
              args=(model.name,), icon=":material/play_arrow:")
    b2.download_button("Download the model (zip: safetensors + json)", lambda: model_zip_bytes(model),
                       file_name=f"{model.name}.zip", mime="application/zip", key="train_download",
                       icon=":material/download:")
    if st.session_state.get("model_name") == TRAINED_PREFIX + model.name:
        st.caption("This model is selected: go to **Data & model** to load data and run it.")
    return True
