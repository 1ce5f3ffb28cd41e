"""Which estimator produces the reported cell-type expression (GEPs), and the estimators themselves (issue 25).

The network's GEP branch predicts each type's profile from the whole bulk; on real cohorts part of what it
predicts follows the type's own fraction (a B-rich sample gets a B profile with more MS4A1), which a biologist
reads as cell state. The estimators were declared before they were scored (``bench/gep_candidates.py``):

``"network"``
    The GEP branch's output as it is (the ensemble mean, CPM over the output genes).
``"closed_form"``
    BayesPrism's expected expression E[Z | X] (:func:`~blue_core.engine.baselines.split_bulk`): each measured
    output gene's bulk value shared among the types in proportion to ``share_k * reference_k``, where the
    shares are the network's fractions weighted by each type's mRNA content (the card's ``rna_content``; cell
    fractions as they are when the card has none) and the reference is the card's ``reference_profiles``. Each
    (sample, type) profile is rescaled so its measured genes sum to what the network gave them.
``"blend"``
    The geometric mean of the two on log1p(CPM): ``log1p(out) = w log1p(network) + (1 - w) log1p(closed form)``,
    ``w`` = :data:`BLEND_WEIGHT`.
``"refit"``
    (candidate 5, declared 2026-12-04 before it was scored.) ``"closed_form"`` with the shares re-fit to the bulk
    first (:func:`~blue_core.engine.baselines.refit_shares`: EM for the mixture with the reference profiles fixed,
    started from the network's mRNA shares, at most :data:`REFIT_ITERATIONS` steps): the split then follows each
    type's share of this bulk's counts rather than the network's fractions times a published mRNA content, whose
    shrinkage toward the mean and content mismatch are what make the closed form's profiles follow the fraction
    (``bench/results/gep_shifts.md``, diagnostic). The reported fractions stay the network's.
``"cohort"``
    (candidate 6, declared 2026-12-04 after candidate 5 was scored and before this one was.) ``"refit"``, but the
    bulk is split by each type's mean profile *in this cohort* rather than the card's reference: given the re-fit
    shares of every sample of the run, the profiles are the Poisson maximum-likelihood ones
    (:func:`~blue_core.engine.baselines.refit_profiles`, from the reference, at most :data:`REFIT_ITERATIONS` steps),
    BayesPrism's cohort-level reference update. Needs at least :func:`cohort_min_samples` samples in the run (else it
    is ``"refit"``, and the input report says so); a sample's GEP then depends on the cohort it came with, as with
    adaptation. The diagnostic that motivated it: with the exact mRNA shares the split by the reference still leaks,
    by the cohort's own mean profiles it does not.
``"joint"``
    (candidate 7, declared 2026-12-04 after candidate 6 was scored and before this one was.) ``"cohort"``, but the
    shares and the cohort profiles are fitted together: :data:`JOINT_ROUNDS` rounds of :data:`JOINT_STEPS` share
    steps then :data:`JOINT_STEPS` profile steps (Poisson NMF with the reference and the network's mRNA shares as
    the start), and each sample's shares are then re-fit against the fitted profiles. The diagnostic that motivated
    it (Kang held-out, seed 17): profiles fitted to the bulk with the *exact* shares leak no more than the truth,
    with shares shrunk toward the mean they leak as the closed form does, and ``"cohort"``'s shares (re-fit against
    the reference) are shrunk (slope 0.43-0.91 on the exact shares).

Genes the bulk did not measure have no bulk value to share: every estimator keeps the network's values there
(they are *inferred*, and :func:`blue_core.analysis.tables.unmeasured_genes` names them). The fit score is
always computed from the network's own GEPs (the closed form reproduces the bulk by construction, so a fit
computed from it would say nothing). The shipped model's card names its estimator (``card["gep_estimator"]``);
a model without one uses ``"network"``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, get_args

import numpy as np

from ..exceptions import BlueInputError
from .baselines import refit_profiles, refit_shares, split_bulk, unit_rows
from .config import GepEstimator

if TYPE_CHECKING:  # pragma: no cover
    from .model import BlueModel

__all__ = ["GEP_ESTIMATORS", "BLEND_WEIGHT", "REFIT_ITERATIONS", "ESTIMATOR_WORDS", "cohort_min_samples", "COHORT_MAX_SAMPLES", "with_cohort", "JOINT_ROUNDS", "JOINT_STEPS",
           "COHORT_ESTIMATORS", "model_estimator", "with_estimator", "estimate_profiles", "ProfileEstimator",
           "mrna_shares"]

#: The declared candidates, in the order they were declared.
GEP_ESTIMATORS: tuple[str, ...] = get_args(GepEstimator)
#: Weight of the network's log1p profile in ``"blend"`` (declared before scoring, not tuned).
BLEND_WEIGHT = 0.5
#: At most this many EM steps re-fit the shares in ``"refit"`` (declared before scoring, not tuned).
REFIT_ITERATIONS = 200
#: What each estimator is, in words (the app's caption, the CLI's report).
ESTIMATOR_WORDS = {
    "network": "the network's GEP branch",
    "closed_form": "each measured gene's bulk value shared among the cell types by their predicted fractions and "
                   "reference profiles (closed-form E[Z|X], as in BayesPrism)",
    "blend": "the geometric mean of the network's GEP branch and the closed-form E[Z|X]",
    "refit": "each measured gene's bulk value shared among the cell types by reference profiles and each type's "
             "share of this sample's counts re-fit to the bulk (closed-form E[Z|X] after BayesPrism's fraction update)",
    "cohort": "each measured gene's bulk value shared among the cell types by their re-fit shares and their mean "
              "profiles in this cohort, fitted on all the samples of the run (closed-form E[Z|X] after BayesPrism's "
              "fraction and reference updates)",
    "joint": "each measured gene's bulk value shared among the cell types by shares and mean profiles fitted "
             "together on all the samples of the run (Poisson NMF from the reference and the network's fractions)",
}
#: ``"joint"``: rounds of alternating share and profile steps, and steps of each per round (declared before scoring).
JOINT_ROUNDS, JOINT_STEPS = 100, 5
#: The estimators whose profiles are fitted on the run's samples.
COHORT_ESTIMATORS = ("cohort", "joint")


#: A file read in chunks fits ``"cohort"``'s profiles on every k-th sample, at most this many (one extra pass).
COHORT_MAX_SAMPLES = 5000


def with_cohort(model: BlueModel, estimator: ProfileEstimator, *, words: str) -> BlueModel:
    """The same model (networks shared) carrying what ``estimator`` fitted on a cohort (:meth:`ProfileEstimator.
    fit_cohort`: the profiles, or None when the run was too small, and ``words``), so every chunk of a run is split
    the same way.

    Returns
    -------
    BlueModel
        A shallow copy whose ``card["gep_estimator"]`` holds ``cohort_profiles`` (``(K, G_out)`` lists) and
        ``cohort_words``.
    """
    other = copy.copy(model)
    other.card = dict(model.card)
    entry = model.card.get("gep_estimator") if isinstance(model.card.get("gep_estimator"), dict) else {}
    other.card["gep_estimator"] = {**entry, "cohort_words": words,
                                   "cohort_profiles": None if estimator.cohort is None else estimator.cohort.tolist()}
    return other


def cohort_min_samples(n_types: int) -> int:
    """Fewest samples in a run for ``"cohort"`` to fit cohort profiles: two per cell type, at least 10.

    Returns
    -------
    int
        ``max(10, 2 * n_types)``.
    """
    return max(10, 2 * int(n_types))


def model_estimator(model: BlueModel) -> str:
    """The estimator a model's GEPs come from: ``card["gep_estimator"]["estimator"]``, else ``"network"``.

    Returns
    -------
    str
        One of :data:`GEP_ESTIMATORS`.
    """
    entry = (model.card or {}).get("gep_estimator") or {}
    name = entry.get("estimator", "network") if isinstance(entry, dict) else "network"
    return name if name in GEP_ESTIMATORS else "network"


def with_estimator(model: BlueModel, estimator: GepEstimator) -> BlueModel:
    """The same model (networks shared, not copied) whose GEPs come from ``estimator``.

    Returns
    -------
    BlueModel
        ``model`` itself when it already uses ``estimator``, else a shallow copy with its own card.

    Raises
    ------
    BlueInputError
        An unknown estimator, or one that needs the card's reference profiles on a model saved without them.
    """
    if estimator not in GEP_ESTIMATORS:
        raise BlueInputError(f"gep_estimator must be one of {list(GEP_ESTIMATORS)}, not {estimator!r}.")
    if estimator == model_estimator(model):
        return model
    if estimator != "network" and model.reference_profiles is None:
        raise BlueInputError(f"model {model.name!r} has no reference profiles in its card, which gep_estimator="
                             f"{estimator!r} needs; use gep_estimator='network' or retrain with a current BLUE.")
    other = copy.copy(model)
    other.card = dict(model.card)
    previous = model.card.get("gep_estimator") if isinstance(model.card.get("gep_estimator"), dict) else {}
    other.card["gep_estimator"] = {**previous, "estimator": estimator, "chosen_by": "the caller"}
    return other


def mrna_shares(proportions: np.ndarray, rna_content: np.ndarray | None) -> np.ndarray:
    """``(n, K)`` each type's share of the sample's mRNA: ``p_k c_k / sum_j p_j c_j`` (``p`` as given without content).

    Parameters
    ----------
    proportions
        ``(n, K)`` cell fractions.
    rna_content
        ``(K,)`` relative mRNA per cell, or None.

    Returns
    -------
    numpy.ndarray
        ``(n, K)`` float64, rows summing to 1 (0 for an all-zero row).
    """
    p = np.clip(np.asarray(proportions, dtype=np.float64), 0.0, None)
    if rna_content is not None:
        p = p * np.asarray(rna_content, dtype=np.float64)[None, :]
    return unit_rows(p)


def _rna_content(model: BlueModel) -> np.ndarray | None:
    values = ((model.card or {}).get("rna_content") or {}).get("values")
    if not values or not all(t in values for t in model.cell_types):
        return None
    return np.array([float(values[t]) for t in model.cell_types])


@dataclass(frozen=True)
class ProfileEstimator:
    """What a model's estimator needs, read from its card once per run (not once per batch).

    Attributes
    ----------
    estimator
        One of :data:`GEP_ESTIMATORS`.
    reference
        ``(K, G_out)`` the card's reference profiles (CPM), None for ``"network"``.
    rna_content
        ``(K,)`` relative mRNA per cell, or None.
    cohort
        ``(K, G_out)`` profiles fitted on this run's samples (``"cohort"``, :meth:`fit_cohort`), None before (or
        when the run is too small): the bulk is then split by ``reference``.
    words
        What :meth:`fit_cohort` did, for the input report ("" before).
    """

    estimator: GepEstimator
    reference: np.ndarray | None
    rna_content: np.ndarray | None
    cohort: np.ndarray | None = None
    words: str = ""

    @classmethod
    def of(cls, model: BlueModel) -> ProfileEstimator:
        """The estimator of ``model`` (:func:`model_estimator`) with its card's inputs.

        Returns
        -------
        ProfileEstimator
            Ready to :meth:`apply`.

        Raises
        ------
        BlueInputError
            The card asks for an estimator that needs reference profiles it does not hold.
        """
        estimator = model_estimator(model)
        if estimator == "network":
            return cls(estimator, None, None)
        reference = model.reference_profiles
        if reference is None:
            raise BlueInputError(f"model {model.name!r} asks for gep_estimator={estimator!r} but its card has no "
                                 "reference profiles; use gep_estimator='network'.")
        entry = model.card.get("gep_estimator") if isinstance(model.card.get("gep_estimator"), dict) else {}
        fitted = entry.get("cohort_profiles") if estimator in COHORT_ESTIMATORS else None
        return cls(estimator, reference.loc[:, list(model.cell_types)].to_numpy(dtype=np.float64).T, _rna_content(model),
                   cohort=None if fitted is None else np.asarray(fitted, dtype=np.float64),
                   words=str(entry.get("cohort_words", "")) if estimator in COHORT_ESTIMATORS else "")

    @property
    def needs_cohort(self) -> bool:
        """Whether :meth:`fit_cohort` must see every sample of the run before :meth:`apply`."""
        return self.estimator in COHORT_ESTIMATORS and self.reference is not None and not self.words

    def fit_cohort(self, bulk: np.ndarray, *, present: np.ndarray, proportions: np.ndarray
                   ) -> tuple[ProfileEstimator, str]:
        """The estimator with profiles fitted on the run's samples (``"cohort"``, ``"joint"``; any other is returned
        as it is).

        Parameters
        ----------
        bulk
            ``(n, G_out)`` every sample's values over the output genes, linear scale (0 where unmeasured).
        present
            ``(G_out,)`` bool, output genes the bulk measured.
        proportions
            ``(n, K)`` the network's cell fractions.

        Returns
        -------
        tuple
            ``(estimator, words)``: the fitted estimator (``self`` when nothing was fitted) and what was done, in
            words for the input report ("" when the estimator fits nothing on a cohort).
        """
        present = np.asarray(present, dtype=bool)
        if not self.needs_cohort:
            return self, ""
        n, n_types = np.shape(proportions)
        need = cohort_min_samples(n_types)
        if n < need or present.sum() < 3:
            words = (f"cohort profiles not fitted ({n} samples, {int(present.sum())} measured output genes; needs "
                     f"{need} samples and 3 genes): the reference split them, as 'refit'")
            return replace(self, words=words), words
        phi = unit_rows(self.reference[:, present])
        X = np.asarray(bulk, dtype=np.float64)[:, present]
        start = mrna_shares(proportions, self.rna_content)
        if self.estimator == "joint":
            theta, q = start, phi
            for _ in range(JOINT_ROUNDS):
                theta = refit_shares(X, theta, phi=q, max_iter=JOINT_STEPS, tol=0.0)
                q = refit_profiles(X, theta, phi=q, max_iter=JOINT_STEPS, tol=0.0)
        else:
            theta = refit_shares(X, start, phi=phi, max_iter=REFIT_ITERATIONS)
            q = refit_profiles(X, theta, phi=phi, max_iter=REFIT_ITERATIONS)
        cohort = self.reference.copy()
        cohort[:, present] = q * self.reference[:, present].sum(axis=1, keepdims=True)
        words = f"cohort profiles fitted on the {n} samples of this run"
        return replace(self, cohort=cohort, words=words), words

    def apply(self, network_gep: np.ndarray, *, bulk: np.ndarray, present: np.ndarray, proportions: np.ndarray
              ) -> np.ndarray:
        """The reported GEPs of a batch (see :func:`estimate_profiles` for the arguments and the result).

        Returns
        -------
        numpy.ndarray
            ``(n, K, G_out)`` CPM.
        """
        present = np.asarray(present, dtype=bool)
        if self.reference is None or present.sum() < 3:
            return network_gep
        phi = self.reference[:, present]  # (K, G_m)
        net = np.asarray(network_gep, dtype=np.float64)
        shares = mrna_shares(proportions, self.rna_content)
        X = np.asarray(bulk, dtype=np.float64)[:, present]
        if self.estimator in ("refit", *COHORT_ESTIMATORS):
            fitted = None if self.cohort is None else unit_rows(self.cohort[:, present])
            phi = unit_rows(phi) if fitted is None else fitted  # the split: by the cohort's profiles once fitted
            against = phi if self.estimator == "joint" else unit_rows(self.reference[:, present])
            shares = refit_shares(X, shares, phi=against, max_iter=REFIT_ITERATIONS)  # "joint": vs its own profiles
        Z = split_bulk(X, shares, phi=phi)  # (n, K, G_m)
        totals = Z.sum(axis=2, keepdims=True)
        target = net[:, :, present].sum(axis=2, keepdims=True)
        ok = (totals > 0) & (shares[:, :, None] > 0)
        closed = np.where(ok, Z * np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0),
                          net[:, :, present])
        out = net.copy()
        if self.estimator != "blend":
            out[:, :, present] = closed
        else:
            out[:, :, present] = np.expm1(BLEND_WEIGHT * np.log1p(net[:, :, present])
                                          + (1.0 - BLEND_WEIGHT) * np.log1p(closed))
        return out.astype(np.float32)


def estimate_profiles(network_gep: np.ndarray, *, model: BlueModel, bulk: np.ndarray, present: np.ndarray,
                      proportions: np.ndarray) -> np.ndarray:
    """The reported GEPs of a batch under the model's estimator (:func:`model_estimator`); a run of many batches
    builds one :class:`ProfileEstimator` instead. For ``"cohort"`` and ``"joint"`` the samples given are the cohort.

    Parameters
    ----------
    network_gep
        ``(n, K, G_out)`` the network's GEPs, CPM over the output genes.
    model
        The model (its card gives the estimator, the reference profiles and the mRNA contents).
    bulk
        ``(n, G_out)`` the bulk's values over the output genes, linear scale (0 where unmeasured).
    present
        ``(G_out,)`` bool, output genes the bulk measured.
    proportions
        ``(n, K)`` the network's cell fractions.

    Returns
    -------
    numpy.ndarray
        ``(n, K, G_out)`` float32 CPM; ``network_gep`` itself for ``"network"`` or when fewer than 3 output genes
        were measured; the network's values on unmeasured genes and for types the network calls absent.
    """
    estimator, _ = ProfileEstimator.of(model).fit_cohort(bulk, present=present, proportions=proportions)
    return estimator.apply(network_gep, bulk=bulk, present=present, proportions=proportions)
