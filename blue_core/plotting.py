"""Every figure BLUE draws: tables in, plotly figures out.

The one home of the figures: the app, the CLI and the fitters' ``plot_*`` methods call these.
No state, no Streamlit; plotly is imported when a figure is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .exceptions import BlueInputError

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from .engine.result import Deconvolution
    from .analysis.subtypes import SubtypeClustering
    from .analysis.survival import SurvivalAnalysis

__all__ = ["COLORBLIND", "km_curves", "save_km", "subtype_heatmap", "consensus_matrix", "sample_order", "stacked_bar", "group_box", "scatter_vs", "fit_bar", "interval_table", "interval_bars", "truth_vs_prediction", "heatmap", "forest", "bar_table"]


#: Okabe-Ito colour-blind-safe palette (black last): survival groups and other few-category figures.
COLORBLIND = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def _steps(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of a right-continuous step function (for filled CI bands)."""
    x = np.repeat(t, 2)[1:]
    yy = np.repeat(y, 2)[:-1]
    return x, yy


def _palette(names: Sequence[str]) -> dict[str, str]:
    import plotly.express as px

    colors = px.colors.qualitative.Safe + px.colors.qualitative.Pastel + px.colors.qualitative.Dark24
    return {str(n): colors[i % len(colors)] for i, n in enumerate(names)}


def sample_order(proportions: pd.DataFrame, *, sort_by: str | None = None, groups: pd.Series | None = None) -> list[str]:
    """Order of samples for a bar chart: by group (if any), then by ``sort_by`` descending.

    Returns
    -------
    list of str
        Sample names, in drawing order.
    """
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

    Returns
    -------
    plotly.graph_objects.Figure
        The chart.
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
              title: str = "", scale_per_feature: bool = False) -> "go.Figure":
    """Box plots with every sample as a point: one box per (feature, group).

    ``scale_per_feature`` draws one panel per feature with its own y axis (genes' CPM differ by orders of
    magnitude; fractions share one axis).

    Returns
    -------
    plotly.graph_objects.Figure
        The chart.
    """
    import plotly.express as px

    data = frame.copy()
    data.index = data.index.astype(str)
    data["group"] = groups.reindex(data.index).astype(str)
    data = data[groups.reindex(data.index).notna().to_numpy()]
    long = data.reset_index(names="sample").melt(id_vars=["sample", "group"], var_name="feature", value_name=value_name)
    if scale_per_feature and frame.shape[1] > 1:
        fig = px.box(long, x="group", y=value_name, color="group", points="all", hover_data=["sample"], title=title,
                     facet_col="feature", facet_col_wrap=min(3, frame.shape[1]), facet_row_spacing=0.12)
        fig.update_yaxes(matches=None, showticklabels=True)
        fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
        fig.update_layout(height=300 * -(-frame.shape[1] // 3) + 80, margin=dict(t=60, b=40), showlegend=False)
        return fig
    fig = px.box(long, x="feature", y=value_name, color="group", points="all", hover_data=["sample"], title=title)
    fig.update_layout(xaxis_title="", legend_title_text="group", height=430, margin=dict(t=50, b=40))
    return fig


def scatter_vs(frame: pd.DataFrame, covariate: pd.Series, *, covariate_name: str, value_name: str = "fraction",
               title: str = "") -> "go.Figure":
    """One panel per feature: value against a numeric clinical covariate, a point per sample.

    Returns
    -------
    plotly.graph_objects.Figure
        The chart (one panel per feature).
    """
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
    """Per-sample fit score (``fit_r``); poorly explained samples in red; the model's threshold dashed.

    Returns
    -------
    plotly.graph_objects.Figure
        The chart.
    """
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
    """One sample's proportions with their 90 % interval: cell types x (proportion, lo, hi).

    Returns
    -------
    pandas.DataFrame
        Cell types x (``proportion``, ``lo``, ``hi``), fractions.
    """
    return pd.DataFrame({"proportion": result.proportions.loc[sample], "lo": result.proportions_lo.loc[sample],
                         "hi": result.proportions_hi.loc[sample]}).rename_axis("cell type")


def interval_bars(result: Deconvolution, sample: str) -> "go.Figure":
    """Bar per cell type (mean proportion of the ensemble) with its 90 % interval as error bars.

    Returns
    -------
    plotly.graph_objects.Figure
        The chart.
    """
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
    """Measured (x) vs predicted (y) proportions, one colour per cell type, with the identity line.

    Returns
    -------
    plotly.graph_objects.Figure
        The scatter with the identity line.
    """
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

    Returns
    -------
    plotly.graph_objects.Figure
        The heatmap.
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
    """Hazard ratios with 95% CI per group (log scale), the reference group at 1.

    Returns
    -------
    plotly.graph_objects.Figure
        The forest plot (log scale).
    """
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
    """Horizontal bar chart of a results table (e.g. enrichment scores, hazard ratios).

    Returns
    -------
    plotly.graph_objects.Figure
        The chart.
    """
    import plotly.express as px

    data = frame.reset_index()
    fig = px.bar(data, x=x, y=y, color=color, orientation=orientation, title=title,
                 color_continuous_scale="Viridis_r" if color else None,
                 range_color=[0, 1] if color in ("fdr", "p") else None,
                 labels={x: x.replace("_", " "), y: y.replace("_", " "), **({color: color.upper()} if color == "fdr" else {})})
    fig.update_layout(height=max(320, 22 * len(data) + 140), margin=dict(t=50, b=40))
    fig.update_yaxes(autorange="reversed")
    return fig


def km_curves(analysis: "SurvivalAnalysis", *, ci: bool = True, title: str | None = None) -> "go.Figure":
    """Kaplan-Meier curves per group with censoring marks and a numbers-at-risk table.

    Returns
    -------
    plotly.graph_objects.Figure
        Top panel: survival probability vs time (``time_unit``), one step curve per group (with
        95% CI bands when ``ci``), ``+`` marks at censored times; bottom panel: numbers at risk
        at ``at_risk_.columns``. The log-rank p is in the title.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    analysis._check_fitted()
    palette = COLORBLIND
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.06,
    )
    for i, g in enumerate(analysis.groups_):
        color = palette[i % len(palette)]
        kmf = analysis.kmf_[g]
        sf = kmf.survival_function_
        t = sf.index.to_numpy(dtype=float)
        s = sf.iloc[:, 0].to_numpy(dtype=float)
        n_g = int((analysis.data_["group"] == g).sum())
        if ci:
            lo = kmf.confidence_interval_.iloc[:, 0].to_numpy(dtype=float)
            hi = kmf.confidence_interval_.iloc[:, 1].to_numpy(dtype=float)
            xs, his = _steps(t, hi)
            _, los = _steps(t, lo)
            fig.add_trace(
                go.Scatter(x=np.r_[xs, xs[::-1]], y=np.r_[his, los[::-1]], fill="toself",
                           fillcolor=color, opacity=0.15, line={"width": 0}, hoverinfo="skip",
                           showlegend=False, legendgroup=g),
                row=1, col=1,
            )
        fig.add_trace(
            go.Scatter(x=t, y=s, mode="lines", line_shape="hv", line={"color": color},
                       name=f"{g} (n={n_g})", legendgroup=g,
                       hovertemplate=f"{g}<br>t=%{{x:.0f}}<br>S(t)=%{{y:.2f}}<extra></extra>"),
            row=1, col=1,
        )
        sub = analysis.data_[(analysis.data_["group"] == g) & (analysis.data_["event"] == 0)]
        if len(sub):
            fig.add_trace(
                go.Scatter(x=sub["time"], y=kmf.survival_function_at_times(sub["time"]).to_numpy(),
                           mode="markers", marker={"symbol": "line-ns-open", "color": color, "size": 8},
                           showlegend=False, legendgroup=g, hoverinfo="skip"),
                row=1, col=1,
            )
    times = list(analysis.at_risk_.columns)
    for i, g in enumerate(analysis.groups_):
        fig.add_trace(
            go.Scatter(x=times, y=[g] * len(times), mode="text", text=[str(v) for v in analysis.at_risk_.loc[g]],
                       textfont={"color": palette[i % len(palette)]}, showlegend=False, hoverinfo="skip"),
            row=2, col=1,
        )
    fig.update_yaxes(title_text="survival probability", range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(title_text="at risk", type="category", range=[len(analysis.groups_) - 0.5, -0.5],
                     showgrid=False, row=2, col=1)
    fig.update_xaxes(title_text=f"time ({analysis.time_unit})", tickvals=times, row=2, col=1)
    fig.update_layout(
        title=title or f"Kaplan-Meier by group (log-rank p = {analysis.logrank_p_:.3g}, n = {analysis.n_matched_})",
        height=550,
    )
    return fig


def subtype_heatmap(clustering: "SubtypeClustering", n_features: int = 40) -> "go.Figure":
    """Heatmap of the most discriminating z-scored features, samples grouped by subtype.

    Returns
    -------
    plotly.graph_objects.Figure
        Top strip: subtype of each sample; main panel: features (rows) x samples (columns), z-scores.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    feats = clustering.top_features(n_features)
    order = clustering._sample_order()
    sub_codes = clustering.labels_[order].map(lambda v: int(str(v)[1:])).to_numpy()[None, :]
    fig = make_subplots(rows=2, cols=1, row_heights=[0.06, 0.94], shared_xaxes=True, vertical_spacing=0.01)
    fig.add_trace(
        go.Heatmap(
            z=sub_codes,
            x=order,
            y=["subtype"],
            colorscale="Viridis",
            showscale=False,
            text=clustering.labels_[order].to_numpy()[None, :],
            hovertemplate="%{x}: %{text}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    z = clustering.data_.loc[order, feats].to_numpy().T
    fig.add_trace(
        go.Heatmap(
            z=np.clip(z, -3, 3),
            x=order,
            y=feats,
            colorscale="RdBu_r",
            zmid=0,
            colorbar={"title": "z-score"},
            hovertemplate="%{y}<br>%{x}: %{z:.2f}<extra></extra>",
        ),
        row=2,
        col=1,
    )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(type="category", row=2, col=1)
    fig.update_layout(
        title=f"Subtype features ({clustering.features}, k={clustering.k_})", height=max(400, 14 * len(feats) + 150)
    )
    return fig


def consensus_matrix(clustering: "SubtypeClustering") -> "go.Figure":
    """Consensus matrix of the chosen k, samples ordered by subtype (values in [0, 1]).

    Returns
    -------
    plotly.graph_objects.Figure
        The heatmap.
    """
    import plotly.graph_objects as go

    clustering._check_fitted()
    order = clustering._sample_order()
    c = clustering.consensus_.loc[order, order].to_numpy()
    fig = go.Figure(
        go.Heatmap(
            z=c, x=order, y=order, colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "consensus"},
            hovertemplate="%{x} / %{y}: %{z:.2f}<extra></extra>",
        )
    )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    fig.update_layout(title=f"Consensus matrix (k={clustering.k_})", height=500)
    return fig


def save_km(analysis: "SurvivalAnalysis", folder: str | os.PathLike, *, name: str = "kaplan_meier",
            title: str | None = None, formats: Sequence[Literal["html", "png"]] = ("html", "png")) -> list[Path]:
    """Write a fitted survival analysis's Kaplan-Meier curves as ``<name>.html`` (interactive, plotly.js inline:
    opens offline; about 5 MB) and ``<name>.png`` (matplotlib; same colours, CI bands, censoring marks, numbers
    at risk); ``formats`` chooses which.

    Returns
    -------
    list of pathlib.Path
        The files written, in ``formats`` order.
    """
    unknown = set(formats) - {"html", "png"}
    if unknown or not formats:
        raise BlueInputError(f"formats must be a non-empty subset of ('html', 'png'), got {tuple(formats)!r}.")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    if "html" in formats:
        written["html"] = folder / f"{name}.html"
        km_curves(analysis, title=title).write_html(written["html"], include_plotlyjs=True, full_html=True)
    analysis._check_fitted()
    if "png" not in formats:
        return [written[f] for f in formats]
    fig, (ax, risk) = plt.subplots(2, 1, figsize=(7, 5.5), height_ratios=[4, 1], sharex=True)
    for i, group in enumerate(analysis.groups_):
        color = COLORBLIND[i % len(COLORBLIND)]
        kmf = analysis.kmf_[group]
        sf = kmf.survival_function_
        t, y = sf.index.to_numpy(dtype=float), sf.iloc[:, 0].to_numpy(dtype=float)
        n = int((analysis.data_["group"] == group).sum())
        ax.step(t, y, where="post", color=color, label=f"{group} (n={n})")
        ci = kmf.confidence_interval_
        ax.fill_between(t, ci.iloc[:, 0].to_numpy(dtype=float), ci.iloc[:, 1].to_numpy(dtype=float), step="post",
                        color=color, alpha=0.15, linewidth=0)
        censored = analysis.data_[(analysis.data_["group"] == group) & (analysis.data_["event"] == 0)]["time"]
        if len(censored):
            ax.plot(censored, kmf.survival_function_at_times(censored).to_numpy(), "|", color=color, markersize=8)
    times = [float(x) for x in analysis.at_risk_.columns]
    for i, group in enumerate(analysis.groups_):
        for x, count in zip(times, analysis.at_risk_.loc[group]):
            risk.text(x, i, str(int(count)), ha="center", va="center", color=COLORBLIND[i % len(COLORBLIND)], fontsize=8)
    risk.set_yticks(range(len(analysis.groups_)), [str(g) for g in analysis.groups_])
    risk.set_ylim(len(analysis.groups_) - 0.5, -0.5)
    risk.set_xlabel(f"time ({analysis.time_unit})")
    risk.set_ylabel("at risk")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("survival probability")
    ax.set_title(title or f"Kaplan-Meier by group (log-rank p = {analysis.logrank_p_:.3g}, n = {analysis.n_matched_})",
                 fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    written["png"] = folder / f"{name}.png"
    fig.savefig(written["png"], dpi=120)
    plt.close(fig)
    return [written[f] for f in formats]
