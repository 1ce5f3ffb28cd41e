"""Survival by subtype: Kaplan-Meier, log-rank tests, Cox hazard ratios (lifelines).

:class:`SurvivalAnalysis` follows lifelines' fitter vocabulary: settings in the constructor,
``fit(labels, clinical)`` returns ``self``, fitted values end in ``_``, ``summary`` is a tidy table,
``plot_km`` returns a plotly figure, ``to_dict`` gives a JSON-serialisable record (``survival.json``).

Statistics
----------
- Kaplan-Meier estimate per group (``lifelines.KaplanMeierFitter``); median survival is the first
  time the curve reaches 0.5 (``None`` = not reached).
- Multivariate log-rank test across all groups (``lifelines.statistics.multivariate_logrank_test``)
  and pairwise log-rank tests (``pairwise_logrank_test``; unadjusted p and Bonferroni-adjusted p).
- Cox proportional-hazards model with the group as dummy-coded covariate (``lifelines.CoxPHFitter``):
  hazard ratio of each group vs the reference group with Wald 95% CI and p.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..exceptions import BlueInputError
from ..io.strictjson import jsonable

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

__all__ = ["SurvivalAnalysis", "EVENT_SPELLINGS", "best_prognosis_group"]

logger = logging.getLogger(__name__)

#: Spellings of the event column mapped to 1 (event, e.g. death) and 0 (censored), case-insensitive.
EVENT_SPELLINGS: dict[str, int] = {
    "dead": 1, "deceased": 1, "died": 1, "death": 1, "event": 1, "yes": 1, "true": 1, "1": 1, "1.0": 1,
    "1:deceased": 1, "1:dead": 1,
    "alive": 0, "living": 0, "censored": 0, "no": 0, "false": 0, "0": 0, "0.0": 0,
    "0:living": 0, "0:alive": 0, "0:censored": 0,
}


def _examples(values: Sequence[Any], n: int = 3) -> str:
    return ", ".join(repr(str(v)) for v in list(values)[:n])


def _labels_series(labels: Any) -> pd.Series:
    if isinstance(labels, pd.DataFrame):
        cols = [c.lower() for c in labels.columns]
        if "sample" in cols and labels.shape[1] >= 2:
            s_col = labels.columns[cols.index("sample")]
            other = [c for c in labels.columns if c != s_col]
            g_col = "subtype" if "subtype" in other else other[0]
            labels = labels.set_index(s_col)[g_col]
        elif labels.shape[1] == 1:
            labels = labels.iloc[:, 0]
        else:
            raise BlueInputError(
                "The subtype table needs a 'sample' column and a group column (e.g. 'subtype'); "
                f"it has {list(labels.columns)}."
            )
    if not isinstance(labels, pd.Series):
        raise BlueInputError(
            f"labels must be a pandas Series (sample ID -> group) or a table with 'sample' and 'subtype' "
            f"columns, not {type(labels).__name__}."
        )
    out = labels.copy()
    out.index = out.index.astype(str).str.strip()
    out = out[out.notna()].astype(str)
    if out.index.duplicated().any():
        raise BlueInputError(
            f"Duplicated sample IDs in the subtype labels ({_examples(out.index[out.index.duplicated()])}): "
            "give each sample one label."
        )
    return out


def _event_values(raw: pd.Series, col: str) -> tuple[pd.Series, str | None]:
    """Map an event column to 0/1 floats (NaN kept). Returns the values and a note if strings were mapped."""
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype(float), None
    numeric = pd.to_numeric(raw, errors="coerce")
    non_missing = raw.notna()
    if (numeric.notna() == non_missing).all():
        bad = sorted(set(numeric.dropna().unique()) - {0.0, 1.0})
        if bad:
            raise BlueInputError(
                f"The event column {col!r} must be 0 (censored) or 1 (event, e.g. death); found {bad[:5]}. "
                "Recode it to 0/1, or pass event_col= the right column."
            )
        return numeric.astype(float), None
    text = raw.astype(str).str.strip().str.lower()
    mapped = text.map(EVENT_SPELLINGS)
    unknown = sorted(set(text[non_missing & mapped.isna()]))
    if unknown:
        raise BlueInputError(
            f"The event column {col!r} has values that are not 0/1 and not a known spelling: {unknown[:5]}. "
            "Recode it to 1 = event (death) and 0 = censored (alive), e.g. "
            "clinical[col] = (clinical[col] == 'Dead').astype(int)."
        )
    seen = sorted(set(raw[non_missing].astype(str).str.strip()))
    note = f"event column {col!r} mapped from text: " + ", ".join(
        f"{v!r}->{EVENT_SPELLINGS[v.lower()]}" for v in seen
    )
    mapped[~non_missing] = np.nan
    return mapped.astype(float), note


def _nice_ticks(t_max: float, n: int = 5) -> list[float]:
    """About ``n`` round times from 0 to ``t_max`` (steps 1, 2, 2.5 or 5 x 10^m; at most n + 2 ticks)."""
    if not np.isfinite(t_max) or t_max <= 0:
        return [0.0]
    mag = 10 ** math.floor(math.log10(t_max / n))
    steps = [m * mag for m in (1, 2, 2.5, 5, 10, 20)]
    step = next(s for s in steps if t_max / s <= n + 1)
    return [float(v) for v in np.arange(0.0, t_max + 1e-9, step)]


def _group_key(g: str) -> tuple[int, Any]:
    s = str(g)
    if len(s) > 1 and s[0] == "S" and s[1:].isdigit():
        return (0, int(s[1:]))
    return (1, s)



class SurvivalAnalysis:
    """Kaplan-Meier, log-rank and Cox summaries of survival by group (subtype).

    Parameters
    ----------
    time_col
        Clinical column with follow-up time (non-negative; e.g. days).
    event_col
        Clinical column with the event indicator: 1 = event (death), 0 = censored. Common text
        spellings (``"Dead"``/``"Alive"``, ``"deceased"``/``"living"``, ``True``/``False``) are mapped
        and the mapping is reported in ``notes_``.
    sample_col
        Clinical column with the sample IDs (if absent, the clinical table's index is used).
    reference
        Reference group for the hazard ratios; default the first group (``"S1"`` for subtypes).
    at_risk_times
        Times at which numbers at risk are reported; default ~5 evenly spaced round times.
    time_unit
        Unit of ``time_col`` used in labels (default ``"days"``).
    adjust_for
        Clinical columns (e.g. age, cytogenetic risk) for a second, adjusted Cox model
        (``adjusted_hazard_ratios_``): a column whose values are numbers enters as is, any other as
        dummy-coded levels (reference = the most frequent level); patients missing any of them are left out
        of the adjusted model only (``n_adjusted_``).

    Attributes
    ----------
    data_ : pandas.DataFrame
        Matched samples: index sample, columns ``group``, ``time``, ``event``.
    n_matched_, n_dropped_ : int
        Samples used, and matched samples dropped for a missing time or event.
    notes_ : list of str
        What was assumed or dropped (also logged).
    groups_ : list of str
        Groups in order.
    kmf_ : dict
        Group -> fitted ``lifelines.KaplanMeierFitter``.
    logrank_ : lifelines.statistics.StatisticalResult
        Multivariate log-rank test; ``logrank_p_`` is its p-value.
    pairwise_ : pandas.DataFrame
        ``group_a``, ``group_b``, ``statistic``, ``p``, ``p_bonferroni``.
    hazard_ratios_ : pandas.DataFrame
        ``group``, ``hr``, ``hr_lower``, ``hr_upper``, ``p`` vs ``reference_`` (NaN where Cox failed).
    at_risk_ : pandas.DataFrame
        Numbers at risk: groups (rows) x times (columns).
    adjusted_hazard_ratios_ : pandas.DataFrame or None
        As ``hazard_ratios_`` from the Cox model with the ``adjust_for`` covariates (None without them).
    n_adjusted_ : int
        Patients in the adjusted model (complete cases).
    """

    def __init__(
        self,
        time_col: str = "os_days",
        event_col: str = "os_event",
        *,
        sample_col: str = "sample",
        reference: str | None = None,
        at_risk_times: Sequence[float] | None = None,
        time_unit: str = "days",
        adjust_for: Sequence[str] = (),
    ) -> None:
        self.adjust_for = [str(c) for c in adjust_for]
        self.time_col = time_col
        self.event_col = event_col
        self.sample_col = sample_col
        self.reference = reference
        self.at_risk_times = None if at_risk_times is None else [float(t) for t in at_risk_times]
        self.time_unit = time_unit

    def __repr__(self) -> str:
        if not hasattr(self, "logrank_p_"):
            return "<SurvivalAnalysis unfitted>"
        return f"<SurvivalAnalysis n={self.n_matched_} groups={len(self.groups_)} logrank_p={self.logrank_p_:.3g}>"

    # ------------------------------------------------------------------ joining & checks
    def _clinical_ids(self, clinical: pd.DataFrame) -> pd.Index:
        """The clinical table's sample IDs: its ``sample_col`` column, else its index (stripped strings)."""
        if self.sample_col in clinical.columns:
            return pd.Index(clinical[self.sample_col].astype(str).str.strip())
        logger.info("no %r column in the clinical table: using its index as sample IDs", self.sample_col)
        return pd.Index(clinical.index).astype(str).str.strip()

    def _join(self, labels: Any, clinical: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(clinical, pd.DataFrame):
            raise BlueInputError(f"clinical must be a pandas DataFrame, not {type(clinical).__name__}.")
        lab = _labels_series(labels)
        missing = [c for c in (self.time_col, self.event_col) if c not in clinical.columns]
        if missing:
            raise BlueInputError(
                f"The clinical table has no column(s) {missing}. Its columns are {list(clinical.columns)[:15]}. "
                "Pass time_col= and event_col= naming the survival time and event columns."
            )
        ids = self._clinical_ids(clinical)
        clin = pd.DataFrame(
            {"time": clinical[self.time_col].to_numpy(), "event_raw": clinical[self.event_col].to_numpy()},
            index=pd.Index(ids, name="sample"),
        )
        if clin.index.duplicated().any():
            raise BlueInputError(
                f"Duplicated sample IDs in the clinical table ({_examples(clin.index[clin.index.duplicated()])}): "
                "keep one row per sample."
            )
        common = [s for s in lab.index if s in clin.index]
        if not common:
            hint = ""
            trunc_lab = {s[:12] for s in lab.index}
            trunc_clin = {s[:12] for s in clin.index}
            if any(s.startswith("TCGA-") for s in lab.index) and trunc_lab & trunc_clin:
                hint = (
                    f" {len(trunc_lab & trunc_clin)} would match if TCGA barcodes were cut to the 12-character "
                    "patient ID (e.g. 'TCGA-AB-2803'): make both sides use the same form."
                )
            else:
                norm = lambda s: s.upper().replace(".", "-").replace("_", "-")  # noqa: E731
                if {norm(s) for s in lab.index} & {norm(s) for s in clin.index}:
                    hint = " IDs match when '.', '_' and '-' and upper/lower case are treated alike: harmonise them."
            raise BlueInputError(
                f"No sample IDs match between the subtypes ({_examples(lab.index)}, ...) and the clinical table's "
                f"{self.sample_col!r} ({_examples(clin.index)}, ...).{hint or ' Use the same sample IDs on both sides.'}"
            )
        notes = []
        n_unmatched = len(lab) - len(common)
        if n_unmatched:
            notes.append(f"{n_unmatched} of {len(lab)} labelled samples have no clinical row")
        df = clin.loc[common].copy()
        df.insert(0, "group", lab.loc[common].to_numpy())
        times = pd.to_numeric(df["time"], errors="coerce")
        bad_text = df["time"].notna() & times.isna()
        if bad_text.any():
            raise BlueInputError(
                f"The time column {self.time_col!r} has non-numeric values ({_examples(df.loc[bad_text, 'time'])}). "
                "Give follow-up times as numbers (e.g. days); leave unknown times empty."
            )
        if (times < 0).any():
            raise BlueInputError(
                f"The time column {self.time_col!r} has {int((times < 0).sum())} negative value(s) "
                f"(e.g. sample {df.index[(times < 0).to_numpy()][0]!r}). Survival times must be >= 0: "
                "check the column (days from diagnosis to death or last follow-up)."
            )
        df["time"] = times.astype(float)
        events, note = _event_values(df.pop("event_raw"), self.event_col)
        if note:
            notes.append(note)
        df["event"] = events
        drop = df["time"].isna() | df["event"].isna()
        if drop.any():
            notes.append(f"dropped {int(drop.sum())} matched sample(s) with a missing time or event")
        df = df[~drop]
        df["event"] = df["event"].astype(int)
        self.n_dropped_ = int(drop.sum())
        self.n_unmatched_ = int(n_unmatched)
        self.notes_ = notes
        for n in notes:
            logger.warning("survival: %s", n)
        return df

    # ------------------------------------------------------------------ fit
    def fit(self, labels: Any, clinical: pd.DataFrame) -> SurvivalAnalysis:
        """Join groups with survival data and fit KM curves, log-rank tests and a Cox model.

        Parameters
        ----------
        labels
            pandas Series (sample ID -> group), or a table with ``sample`` and ``subtype`` columns
            (e.g. ``subtypes.csv``).
        clinical
            Clinical table with ``sample_col`` (or sample IDs as index), ``time_col`` and ``event_col``.

        Returns
        -------
        SurvivalAnalysis
            ``self``.
        """
        from lifelines import KaplanMeierFitter
        from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test

        df = self._join(labels, clinical)
        groups = sorted(df["group"].unique(), key=_group_key)
        if len(groups) < 2:
            raise BlueInputError(
                f"Only one group ({groups}) among the {len(df)} matched samples: survival comparison needs >= 2."
            )
        if len(df) < 6:
            raise BlueInputError(f"Only {len(df)} samples with survival data matched: too few to compare groups.")
        if df["event"].sum() == 0:
            raise BlueInputError(
                f"No events (all {len(df)} matched samples censored) in {self.event_col!r}: nothing to compare. "
                "Check the event coding (1 = death)."
            )
        self.data_ = df
        self.groups_ = [str(g) for g in groups]
        self.n_matched_ = int(len(df))
        self.reference_ = str(self.reference) if self.reference is not None else self.groups_[0]
        if self.reference_ not in self.groups_:
            raise BlueInputError(f"reference={self.reference!r} is not one of the groups {self.groups_}.")
        self.kmf_ = {}
        for g in self.groups_:
            sub = df[df["group"] == g]
            self.kmf_[g] = KaplanMeierFitter(label=g).fit(sub["time"], sub["event"])
        self.logrank_ = multivariate_logrank_test(df["time"], df["group"], df["event"])
        self.logrank_p_ = float(self.logrank_.p_value)
        pw = pairwise_logrank_test(df["time"], df["group"], df["event"]).summary.reset_index()
        pw.columns = ["group_a", "group_b", "statistic", "p", "-log2(p)"]
        pw = pw.drop(columns="-log2(p)")
        pw["p_bonferroni"] = np.minimum(pw["p"] * len(pw), 1.0)
        self.pairwise_ = pw
        self.hazard_ratios_ = self._cox(df)
        self.adjusted_hazard_ratios_, self.n_adjusted_ = None, 0
        if self.adjust_for:
            covariates = self._covariates(clinical, df.index)
            complete = covariates.notna().all(axis=1)
            if (~complete).any():
                self.notes_.append(f"adjusted Cox: {int((~complete).sum())} patient(s) without "
                                   f"{', '.join(self.adjust_for)} left out")
            self.n_adjusted_ = int(complete.sum())
            self.adjusted_hazard_ratios_ = self._cox(df[complete.to_numpy()], covariates=covariates[complete])
        times = self.at_risk_times or _nice_ticks(float(df["time"].max()))
        self.at_risk_ = pd.DataFrame(
            {t: [int((df.loc[df["group"] == g, "time"] >= t).sum()) for g in self.groups_] for t in times},
            index=pd.Index(self.groups_, name="group"),
        )
        logger.info(
            "survival: %d samples, %d groups, log-rank p = %.3g", self.n_matched_, len(self.groups_), self.logrank_p_
        )
        return self

    def _covariates(self, clinical: pd.DataFrame, samples: pd.Index) -> pd.DataFrame:
        """The ``adjust_for`` columns for ``samples``, numbers as float, other values as text (NaN = missing)."""
        missing = [c for c in self.adjust_for if c not in clinical.columns]
        if missing:
            raise BlueInputError(f"adjust_for: the clinical table has no column(s) {missing}; its columns are "
                                 f"{list(clinical.columns)[:15]}.")
        table = clinical.set_axis(self._clinical_ids(clinical), axis=0)
        out = pd.DataFrame(index=samples)
        for column in self.adjust_for:
            values = table[column].reindex(samples)
            numbers = pd.to_numeric(values, errors="coerce")
            out[column] = numbers if numbers.notna().sum() == values.notna().sum() else values.astype("object").where(
                values.notna(), None)
        return out

    def _cox(self, df: pd.DataFrame, *, covariates: pd.DataFrame | None = None) -> pd.DataFrame:
        from lifelines import CoxPHFitter
        from lifelines.exceptions import ConvergenceError, ConvergenceWarning

        others = [g for g in self.groups_ if g != self.reference_]
        design = pd.DataFrame({"time": df["time"], "event": df["event"]})
        for g in others:
            design[f"group_{g}"] = (df["group"] == g).astype(float)
        for column in (covariates.columns if covariates is not None else []):
            values = covariates[column]
            if pd.api.types.is_numeric_dtype(values):
                design[f"cov_{column}"] = values.astype(float).to_numpy()
                continue
            levels = values.astype(str).value_counts()
            for level in sorted(levels.index[1:]):  # reference = the most frequent level
                design[f"cov_{column}={level}"] = (values.astype(str) == level).astype(float).to_numpy()
        rows = []
        try:
            with warnings.catch_warnings():
                # a group without events (or perfectly separated) gives a non-finite HR: report NaN instead
                warnings.simplefilter("error", category=ConvergenceWarning)
                cph = CoxPHFitter().fit(design, duration_col="time", event_col="event")
            s = cph.summary
            for g in others:
                r = s.loc[f"group_{g}"]
                rows.append(
                    {"group": g, "hr": float(r["exp(coef)"]), "hr_lower": float(r["exp(coef) lower 95%"]),
                     "hr_upper": float(r["exp(coef) upper 95%"]), "p": float(r["p"])}
                )
        except (ConvergenceError, ConvergenceWarning, np.linalg.LinAlgError, ValueError, ZeroDivisionError) as err:
            # lifelines' convergence failures and singular designs (a group without events); a bug elsewhere raises
            msg = f"Cox model did not converge ({type(err).__name__}); hazard ratios not reported"
            self.notes_.append(msg)
            logger.warning("survival: %s", msg)
            rows = [{"group": g, "hr": np.nan, "hr_lower": np.nan, "hr_upper": np.nan, "p": np.nan} for g in others]
        ref = {"group": self.reference_, "hr": 1.0, "hr_lower": np.nan, "hr_upper": np.nan, "p": np.nan}
        return pd.DataFrame([ref] + rows)

    def _check_fitted(self) -> None:
        if not hasattr(self, "logrank_p_"):
            raise BlueInputError("This SurvivalAnalysis is not fitted yet: call fit(labels, clinical) first.")

    # ------------------------------------------------------------------ outputs
    def median_survival(self) -> pd.Series:
        """Group -> median survival time (NaN = not reached), in ``time_unit``."""
        self._check_fitted()
        return pd.Series(
            {g: float(self.kmf_[g].median_survival_time_) for g in self.groups_}, name="median"
        ).replace(np.inf, np.nan)

    @property
    def summary(self) -> pd.DataFrame:
        """Tidy table, one row per group: ``group``, ``n``, ``events``, ``median_survival``, ``hr``,
        ``hr_lower``, ``hr_upper``, ``hr_p`` (vs ``reference_``). The log-rank p is in ``logrank_p_``
        and in ``summary.attrs["logrank_p"]``."""
        self._check_fitted()
        med = self.median_survival()
        hr = self.hazard_ratios_.set_index("group")
        rows = []
        for g in self.groups_:
            sub = self.data_[self.data_["group"] == g]
            rows.append(
                {"group": g, "n": int(len(sub)), "events": int(sub["event"].sum()),
                 "median_survival": float(med[g]), "hr": float(hr.loc[g, "hr"]),
                 "hr_lower": float(hr.loc[g, "hr_lower"]), "hr_upper": float(hr.loc[g, "hr_upper"]),
                 "hr_p": float(hr.loc[g, "p"])}
            )
        out = pd.DataFrame(rows)
        out.attrs["logrank_p"] = self.logrank_p_
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record of the analysis (what ``survival.json`` holds).

        Keys: ``time_col``, ``event_col``, ``time_unit``, ``n_matched``, ``n_dropped``, ``n_unmatched``,
        ``notes``, ``logrank`` (``statistic``, ``df``, ``p``), ``reference``, ``groups`` (list of
        per-group dicts: ``group``, ``n``, ``events``, ``median_survival`` (None = not reached), ``hr``,
        ``hr_lower``, ``hr_upper``, ``hr_p``), ``pairwise`` (list of dicts), ``at_risk``
        (``times`` and group -> counts); ``adjusted`` (``for``, ``n``, ``hazard_ratios``) with ``adjust_for``.
        """
        self._check_fitted()
        groups = []
        for row in self.summary.to_dict(orient="records"):
            groups.append({k: (jsonable(float(v)) if k not in ("group", "n", "events") else v) for k, v in row.items()})
            groups[-1]["n"] = int(row["n"])
            groups[-1]["events"] = int(row["events"])
        return {
            "time_col": self.time_col,
            "event_col": self.event_col,
            "time_unit": self.time_unit,
            "n_matched": int(self.n_matched_),
            "n_dropped": int(self.n_dropped_),
            "n_unmatched": int(self.n_unmatched_),
            "notes": list(self.notes_),
            "logrank": {
                "statistic": float(self.logrank_.test_statistic),
                "df": int(len(self.groups_) - 1),
                "p": float(self.logrank_p_),
            },
            "reference": self.reference_,
            "groups": groups,
            "pairwise": [
                {"group_a": str(r["group_a"]), "group_b": str(r["group_b"]), "statistic": float(r["statistic"]),
                 "p": float(r["p"]), "p_bonferroni": float(r["p_bonferroni"])}
                for r in self.pairwise_.to_dict(orient="records")
            ],
            "at_risk": {
                "times": [float(t) for t in self.at_risk_.columns],
                "counts": {g: [int(v) for v in self.at_risk_.loc[g]] for g in self.groups_},
            },
            **({"adjusted": {"for": list(self.adjust_for), "n": int(self.n_adjusted_), "hazard_ratios": [
                {k: (str(v) if k == "group" else jsonable(float(v))) for k, v in r.items()}
                for r in self.adjusted_hazard_ratios_.to_dict(orient="records")]}}
               if getattr(self, "adjusted_hazard_ratios_", None) is not None else {}),
        }

    def plot_km(self, *, ci: bool = True, title: str | None = None) -> go.Figure:
        """Kaplan-Meier curves of this analysis: :func:`blue_core.plotting.km_curves` (figure described there)."""
        from ..plotting import km_curves

        return km_curves(self, ci=ci, title=title)

    def plot_forest(self) -> go.Figure:
        """Cox hazard ratios with 95 % CI per group against the reference group (log scale).

        Returns
        -------
        plotly.graph_objects.Figure
            One point per non-reference group (``summary`` rows with a finite HR), the reference at 1.
        """
        from ..plotting import forest

        self._check_fitted()
        return forest(self.summary, reference=self.reference_)


def best_prognosis_group(analysis: SurvivalAnalysis) -> str:
    """The group with the best overall survival: the longest median survival; if any group's median is not
    reached (fewer than half died), the lowest Cox hazard instead (the rule of ``bench/aml_protocol.md``).

    Parameters
    ----------
    analysis
        A fitted :class:`SurvivalAnalysis`.

    Returns
    -------
    str
        The group's name.
    """
    analysis._check_fitted()
    med = analysis.median_survival().astype(float)
    if np.isfinite(med.to_numpy()).all():
        return str(med.idxmax())
    hr = analysis.hazard_ratios_.set_index("group")["hr"].astype(float).fillna(np.inf)
    return str(hr.idxmin())
