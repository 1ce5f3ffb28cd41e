"""Every figure BLUE draws: tables in, plotly figures out.

The one home of the figures: the app, the CLI and the fitters' ``plot_*`` methods call these.
No state, no Streamlit; plotly is imported when a figure is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd


if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from .inference import Deconvolution

__all__ = ["sample_order", "stacked_bar", "group_box", "scatter_vs", "fit_bar", "interval_table", "interval_bars", "truth_vs_prediction", "heatmap", "forest", "bar_table"]


def _palette(names: Sequence[str]) -> dict[str, str]:
    import plotly.express as px

    colors = px.colors.qualitative.Safe + px.colors.qualitative.Pastel + px.colors.qualitative.Dark24
    return {str(n): colors[i % len(colors)] for i, n in enumerate(names)}


def sample_order(proportions: pd.DataFrame, *, sort_by: str | None = None, groups: pd.Series | None = None) -> list[str]:
    """Order of samples for a bar chart: by group (if any), then by ``sort_by`` descending."""
    frame = proportions.copy()
    keys: list[str] = []
    ascending: list[bool] = []
    if groups is not None:
        frame["__group"] = groups.reindex(frame.index).astype(str).to_numpy()
        keys.append("__group")
        ascending.append(True)
    if sort_by and sort_by in proportions.columns:
        keys.append(sort_by)
        ascending.append(False)
    if keys:
        frame = frame.sort_values(keys, ascending=ascending, kind="mergesort")
    return [str(s) for s in frame.index]


def stacked_bar(proportions: pd.DataFrame, *, order: Sequence[str] | None = None, groups: pd.Series | None = None,
                title: str = "Cell-type proportions per sample", color_names: Sequence[str] | None = None
                ) -> "go.Figure":
    """Stacked bar chart: one bar per sample, one colour per cell type (fractions sum to 1).

    ``color_names`` fixes the colour order, so that two charts give the same name the same colour.
    """
    import plotly.graph_objects as go

    order = list(order) if order is not None else [str(s) for s in proportions.index]
    frame = proportions.copy()
    frame.index = frame.index.astype(str)
    frame = frame.loc[order]
    names = list(dict.fromkeys([*(map(str, color_names or [])), *map(str, frame.columns)]))
    colors = _palette(names)
    if groups is None:
        fig = go.Figure()
        panels = [("", order)]
    else:
        from plotly.subplots import make_subplots

        labels = groups.reindex(frame.index).astype(str).fillna("NA")
        levels = list(dict.fromkeys(labels.loc[order]))
        panels = [(g, [s for s in order if labels[s] == g]) for g in levels]
        fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.01,
                            column_widths=[len(p[1]) for p in panels],
                            subplot_titles=[f"{g} (n={len(p)})" for g, p in panels])
    for col, (group, samples) in enumerate(panels, start=1):
        for cell_type in frame.columns:
            trace = go.Bar(name=str(cell_type), x=samples, y=frame.loc[samples, cell_type].to_numpy(),
                           marker_color=colors[str(cell_type)], legendgroup=str(cell_type), showlegend=col == 1,
                           meta=group, hovertemplate="%{x}<br>%{fullData.name}: %{y:.3f}<extra>%{meta}</extra>")
            if groups is None:
                fig.add_trace(trace)
            else:
                fig.add_trace(trace, row=1, col=col)
    fig.update_layout(barmode="stack", title=title, legend_title_text="cell type", margin=dict(t=70, b=40),
                      height=460, bargap=0.1)
    fig.update_yaxes(range=[0, 1])
    if groups is None:
        fig.update_layout(yaxis_title="fraction of cells", xaxis_title="sample")
    else:
        fig.update_yaxes(title_text="fraction of cells", row=1, col=1)
    if len(order) > 60:
        fig.update_xaxes(showticklabels=False)
    return fig


def group_box(frame: pd.DataFrame, groups: pd.Series, *, value_name: str = "fraction",
              title: str = "") -> "go.Figure":
    """Box plots with every sample as a point: one box per (feature, group)."""
    import plotly.express as px

    data = frame.copy()
    data.index = data.index.astype(str)
    data["group"] = groups.reindex(data.index).astype(str)
    data = data[groups.reindex(data.index).notna().to_numpy()]
    long = data.reset_index(names="sample").melt(id_vars=["sample", "group"], var_name="feature", value_name=value_name)
    fig = px.box(long, x="feature", y=value_name, color="group", points="all", hover_data=["sample"], title=title)
    fig.update_layout(xaxis_title="", legend_title_text="group", height=430, margin=dict(t=50, b=40))
    return fig


def scatter_vs(frame: pd.DataFrame, covariate: pd.Series, *, covariate_name: str, value_name: str = "fraction",
               title: str = "") -> "go.Figure":
    """One panel per feature: value against a numeric clinical covariate, a point per sample."""
    import plotly.express as px

    data = frame.copy()
    data.index = data.index.astype(str)
    data[covariate_name] = pd.to_numeric(covariate.reindex(data.index), errors="coerce")
    data = data.dropna(subset=[covariate_name])
    long = data.reset_index(names="sample").melt(id_vars=["sample", covariate_name], var_name="feature",
                                                 value_name=value_name)
    ncol = min(4, max(1, frame.shape[1]))
    fig = px.scatter(long, x=covariate_name, y=value_name, facet_col="feature", facet_col_wrap=ncol,
                     hover_data=["sample"], title=title)
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    rows = int(np.ceil(frame.shape[1] / ncol))
    fig.update_layout(height=max(300, 240 * rows), margin=dict(t=60, b=40))
    return fig


def fit_bar(fit: pd.DataFrame, *, threshold: float | None = None) -> "go.Figure":
    """Per-sample fit score (``fit_r``); poorly explained samples in red; the model's threshold dashed."""
    import plotly.graph_objects as go

    frame = fit.copy()
    frame.index = frame.index.astype(str)
    poor = frame["poorly_explained"].astype(bool) if "poorly_explained" in frame else pd.Series(False, frame.index)
    fig = go.Figure()
    for flag, color, label in ((False, "#4c78a8", "well explained"), (True, "#d62728", "poorly explained")):
        part = frame[poor == flag]
        if len(part):
            fig.add_bar(x=part.index.tolist(), y=part["fit_r"].to_numpy(), name=label, marker_color=color,
                        hovertemplate="%{x}<br>fit r: %{y:.3f}<extra></extra>")
    if threshold is not None and np.isfinite(threshold):
        fig.add_hline(y=float(threshold), line_dash="dash", line_color="#d62728",
                      annotation_text=f"poorly explained below {threshold:.2f}", annotation_position="top left")
    fig.update_layout(title="How well the model explains each sample (fit r: reconstruction vs input)",
                      yaxis_title="fit r", xaxis_title="sample", height=340, margin=dict(t=50, b=40),
                      showlegend=True,
                      xaxis={"categoryorder": "array", "categoryarray": frame.index.tolist()})
    if len(frame) > 60:
        fig.update_xaxes(showticklabels=False)
    return fig


def interval_table(result: Deconvolution, sample: str) -> pd.DataFrame:
    """One sample's proportions with their 90 % interval: cell types x (proportion, lo, hi)."""
    return pd.DataFrame({"proportion": result.proportions.loc[sample], "lo": result.proportions_lo.loc[sample],
                         "hi": result.proportions_hi.loc[sample]}).rename_axis("cell type")


def interval_bars(result: Deconvolution, sample: str) -> "go.Figure":
    """Bar per cell type (mean proportion of the ensemble) with its 90 % interval as error bars."""
    import plotly.graph_objects as go

    table = interval_table(result, sample)
    colors = _palette(list(result.cell_types))
    fig = go.Figure(go.Bar(
        x=[str(t) for t in table.index], y=table["proportion"].to_numpy(),
        marker_color=[colors[str(t)] for t in table.index],
        error_y=dict(type="data", symmetric=False, array=(table["hi"] - table["proportion"]).to_numpy(),
                     arrayminus=(table["proportion"] - table["lo"]).to_numpy(), color="#333"),
        customdata=np.stack([table["lo"].to_numpy(), table["hi"].to_numpy()], axis=1),
        hovertemplate="%{x}: %{y:.3f} (90% interval %{customdata[0]:.3f}-%{customdata[1]:.3f})<extra></extra>",
    ))
    fig.update_layout(title=f"Cell-type proportions of {sample} with 90% intervals", yaxis_title="fraction of cells",
                      xaxis_title="cell type", height=380, margin=dict(t=50, b=40))
    fig.update_yaxes(range=[0, 1])
    return fig


def truth_vs_prediction(predicted: pd.DataFrame, truth: pd.DataFrame, *, title: str) -> "go.Figure":
    """Measured (x) vs predicted (y) proportions, one colour per cell type, with the identity line."""
    import plotly.graph_objects as go

    shared = [c for c in predicted.columns if c in truth.columns]
    samples = predicted.index.astype(str).intersection(truth.index.astype(str))
    colors = _palette(shared)
    fig = go.Figure()
    for cell_type in shared:
        fig.add_scatter(x=truth.loc[samples, cell_type].to_numpy(), y=predicted.loc[samples, cell_type].to_numpy(),
                        mode="markers", name=str(cell_type), text=list(samples), marker=dict(size=9, color=colors[cell_type]),
                        hovertemplate="%{text}<br>measured %{x:.3f}<br>predicted %{y:.3f}<extra>%{fullData.name}</extra>")
    top = float(np.nanmax([truth.loc[samples, shared].to_numpy().max(), predicted.loc[samples, shared].to_numpy().max(), 0.05]))
    fig.add_scatter(x=[0, top], y=[0, top], mode="lines", line=dict(dash="dash", color="grey"), name="y = x",
                    hoverinfo="skip")
    fig.update_layout(title=title, xaxis_title="measured (flow cytometry)", yaxis_title="predicted by BLUE",
                      height=460, margin=dict(t=50, b=40))
    return fig


def heatmap(frame: pd.DataFrame, *, title: str, colorbar: str, diverging: bool = False,
            x_title: str = "", y_title: str = "", log_color: bool = False) -> "go.Figure":
    """Heatmap of a table (rows drawn top to bottom in the given order).

    ``log_color`` colours by log10(value + 1) (for CPM spanning orders of magnitude); the hover
    still shows the value itself.
    """
    import plotly.graph_objects as go

    values = frame.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=np.log10(np.clip(values, 0, None) + 1) if log_color else values, customdata=values,
        x=[str(c) for c in frame.columns], y=[str(i) for i in frame.index],
        colorscale="RdBu_r" if diverging else "Viridis", zmid=0 if diverging else None,
        colorbar=dict(title=f"log10({colorbar} + 1)" if log_color else colorbar),
        hovertemplate="%{y} / %{x}: %{customdata:.3g}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title,
                      height=max(360, min(1400, 18 * frame.shape[0] + 160)), margin=dict(t=50, b=40))
    fig.update_yaxes(autorange="reversed")
    if frame.shape[1] > 80:
        fig.update_xaxes(showticklabels=False)
    return fig


def forest(summary: pd.DataFrame, *, reference: str) -> "go.Figure":
    """Hazard ratios with 95% CI per group (log scale), the reference group at 1."""
    import plotly.graph_objects as go

    rows = summary[np.isfinite(summary["hr"].astype(float))]
    fig = go.Figure(go.Scatter(
        x=rows["hr"], y=rows["group"].astype(str), mode="markers", marker=dict(size=11, color="#1f4e9c"),
        error_x=dict(type="data", symmetric=False, array=(rows["hr_upper"] - rows["hr"]).fillna(0),
                     arrayminus=(rows["hr"] - rows["hr_lower"]).fillna(0)),
        hovertemplate="%{y}: HR %{x:.2f}<extra></extra>",
    ))
    fig.add_vline(x=1, line_dash="dash", line_color="grey")
    fig.update_layout(title=f"Cox hazard ratios vs {reference} (95% CI; > 1 = higher risk)", xaxis_type="log",
                      xaxis_title="hazard ratio", height=120 + 45 * len(rows), margin=dict(t=50, b=40))
    fig.update_yaxes(autorange="reversed")
    return fig


def bar_table(frame: pd.DataFrame, *, x: str, y: str, color: str | None = None, title: str,
              orientation: str = "h") -> "go.Figure":
    """Horizontal bar chart of a results table (e.g. enrichment scores, hazard ratios)."""
    import plotly.express as px

    data = frame.reset_index()
    fig = px.bar(data, x=x, y=y, color=color, orientation=orientation, title=title,
                 color_continuous_scale="Viridis_r" if color else None,
                 range_color=[0, 1] if color in ("fdr", "p") else None,
                 labels={x: x.replace("_", " "), y: y.replace("_", " "), **({color: color.upper()} if color == "fdr" else {})})
    fig.update_layout(height=max(320, 22 * len(data) + 140), margin=dict(t=50, b=40))
    fig.update_yaxes(autorange="reversed")
    return fig
