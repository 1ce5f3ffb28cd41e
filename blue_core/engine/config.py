"""Configuration objects: the single home of defaults that several modules share.

One frozen object per part of a training run, one per recipe section (issue 23.3): ``GeneSelection`` (``[genes]``),
``SimulationConfig`` (``[simulation]`` and the pseudo-bulk counts), ``TrainConfig`` (``[training]``) and
``NetworkConfig`` (``[network]``: :class:`~blue_core.engine.network.BlueNet`'s signature takes its defaults from it).
:func:`~blue_core.engine.training.train_model` takes them (``genes=``, ``simulation=``, ``training=``, ``network=``);
build a variant with :func:`dataclasses.replace` or ``from_dict``.
"""

from __future__ import annotations

import math

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, Self

from ..exceptions import BlueInputError

__all__ = ["Settings", "NetworkConfig", "GeneSelection", "SimulationConfig", "TrainConfig", "from_settings", "EXCLUDE_PATTERN",
           "MIN_FOLD_CHANGE", "VALIDATION_FRACTION", "GepEstimator"]

#: Which estimator produces the reported GEPs (the estimators: :mod:`blue_core.engine.gep_estimators`; the CLI's
#: ``--gep-estimator`` choices).
GepEstimator = Literal["network", "closed_form", "blend", "refit", "cohort", "joint"]

#: Genes never used as markers by default: ribosomal, mitochondrially encoded and HLA genes, whose
#: single-cell (3' UMI) and bulk measurements differ most and whose levels vary with sample handling.
EXCLUDE_PATTERN = r"^(?:RP[LS]\d+[A-Z]?\d*(?:L\d*|Y\d)?|RPLP\d|RPSA|MRP[LS]\d+[A-Z]?\d*|MT-.+|HLA-.+)$"
#: Default minimum fold change of a marker (its cell type vs the other cells).
MIN_FOLD_CHANGE = 1.5
#: Share of the cells (or donors) held out for validation pseudo-bulk: training, recipes and ensembles.
VALIDATION_FRACTION = 0.1


def from_settings(cls: type, values: Mapping[str, Any] | None, *, what: str) -> Any:
    """``cls(**values)`` for a frozen settings dataclass; a key that is not one of its fields is refused.

    Returns
    -------
    object
        An instance of ``cls``.

    Raises
    ------
    BlueInputError
        An unknown key (the message names ``what`` and lists the valid settings).
    """
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise BlueInputError(f"unknown {what} setting(s) {unknown}; valid: {sorted(known)}.")
    return cls(**values)


class Settings:
    """Base of the frozen settings dataclasses: the one ``from_dict`` / ``as_dict`` pair they share."""

    #: How messages name these settings ("unknown network setting(s) ...").
    _what: ClassVar[str] = "settings"

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (keyword arguments, or what a result records).

        Returns
        -------
        dict
            Field name -> value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None = None) -> Self:
        """Defaults overridden by ``values`` (e.g. a recipe's section).

        Returns
        -------
        Settings
            The merged settings, of the calling class.

        Raises
        ------
        BlueInputError
            A key that is not one of the fields (the message lists the valid ones).
        """
        return from_settings(cls, values, what=cls._what)


@dataclass(frozen=True)
class NetworkConfig(Settings):
    """BlueNet hyper-parameters (defaults chosen with ``bench/architecture.py``).

    Attributes
    ----------
    hidden, n_layers
        Width and depth of the proportion MLP.
    signal_length, base_channels, depth, kernel_size
        The GEP U-Net: length of the 1-D signal the input is projected to, channels of the first level,
        number of down/up levels (``signal_length`` must be a multiple of ``2**depth``), odd kernel size.
    dropout
        Dropout probability in [0, 1).
    """

    hidden: int = 512
    n_layers: int = 3
    signal_length: int = 128
    base_channels: int = 8
    depth: int = 2
    kernel_size: int = 5
    dropout: float = 0.1

    _what: ClassVar[str] = "network"


@dataclass(frozen=True)
class GeneSelection(Settings):
    """Which genes a model reads and predicts (a recipe's ``[genes]``; see :mod:`blue_core.engine.gene_selection`).

    Attributes
    ----------
    input_genes, output_genes
        Explicit gene lists; None = selected on the training cells (``n_markers`` per type for the inputs; markers +
        variable genes, at most ``n_output_genes``, for the outputs).
    input_panel
        Restrict the default input genes to these (the genes a bulk cohort measures).
    input_panels
        Named cohort panels ``{name: genes}`` for panel dropout (each training pseudo-bulk shows one panel).
    n_markers, n_output_genes
        Markers per cell type for the inputs; cap on the outputs.
    exclude, min_fold_change
        Genes matching ``exclude`` are never markers; a marker is at least ``min_fold_change`` times higher in its type.
    output_selection
        Extra arguments of :func:`~blue_core.engine.gene_selection.select_output_genes` (``n_per_cell_type``, ``n_variable``).
    outputs_include_inputs
        Put the input genes among the default output genes.
    """

    input_genes: Sequence[str] | None = None
    output_genes: Sequence[str] | None = None
    input_panel: Sequence[str] | None = None
    input_panels: Mapping[str, Sequence[str]] | None = None
    n_markers: int = 50
    n_output_genes: int = 2000
    exclude: str | None = EXCLUDE_PATTERN
    min_fold_change: float = MIN_FOLD_CHANGE
    output_selection: Mapping[str, Any] | None = None
    outputs_include_inputs: bool = True

    _what: ClassVar[str] = "gene selection"


@dataclass(frozen=True)
class SimulationConfig(Settings):
    """The pseudo-bulk a model trains on (see :func:`~blue_core.engine.simulation.simulate`).

    Attributes
    ----------
    n_samples, n_validation_samples, cells_per_sample
        Training pseudo-bulks, validation pseudo-bulks (None: ``max(200, n_samples // 8)``), cells per pseudo-bulk.
    options
        Extra arguments of ``simulate`` for training and validation alike (``dirichlet_alpha``, ``rna_content``, ...;
        a recipe's ``[simulation]``).
    mixed_fraction
        With several references: the share of pseudo-bulks mixing cells of all references on their shared genes.
    gep_options
        Settings only the GEP branch trains on (e.g. ``{"n_states": 4}``; a recipe's ``[gep_simulation]``).
    gep_reference_options
        Per GEP reference, settings on top of ``gep_options``.
    platform_shrinkage
        Shrinkage of the platform-calibration log-ratios (with ``platform_profiles``).
    """

    n_samples: int = 8000
    n_validation_samples: int | None = None
    cells_per_sample: int = 500
    options: Mapping[str, Any] = field(default_factory=dict)
    mixed_fraction: float = 0.0
    gep_options: Mapping[str, Any] | None = None
    gep_reference_options: Mapping[str, Mapping[str, Any]] | None = None
    platform_shrinkage: float = 0.5

    _what: ClassVar[str] = "simulation"


@dataclass(frozen=True)
class TrainConfig(Settings):
    """How the network is optimised (a recipe's ``[training]``).

    Attributes
    ----------
    epochs, proportion_epochs
        Maximum epochs of the GEP branch (U-Net) and of the proportion branch (MLP); each has its own early stopping.
    batch_size, lr, weight_decay
        Adam settings (the learning rate is halved when the validation loss stalls).
    proportion_weight
        Weight of the proportion MSE in the loss (100 in the paper).
    patience
        Epochs without validation improvement before a branch stops (its best epoch is kept).
    validation_fraction
        Share of cells (or donors) held out for validation pseudo-bulk.
    seed, split_seed
        Seed of everything random (local generators only); the split's own seed (None: ``seed``), shared by
        ensemble members.
    threads
        ``torch.set_num_threads`` during training (None: leave torch's setting).
    gep_early_stopping
        With GEP references: stop the GEP branch on the main references' validation (``"main"``) or all (``"all"``).
    gep_decorrelation
        Weight of the leakage penalty on the GEP branch (issue 25, candidate 4;
        :func:`~blue_core.engine.fitting.leakage_penalty`): per type, the squared gap between the batch correlation
        of each predicted gene with the network's own fraction output and the same correlation of the target,
        summed over types. 0 (default) = the paper's loss. Early stopping still watches the GEP MSE alone.
    """

    epochs: int = 30
    proportion_epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    proportion_weight: float = 100.0
    patience: int = 8
    validation_fraction: float = VALIDATION_FRACTION
    seed: int = 0
    split_seed: int | None = None
    threads: int | None = None
    gep_early_stopping: Literal["main", "all"] = "main"
    gep_decorrelation: float = 0.0

    _what: ClassVar[str] = "training"

    def __post_init__(self) -> None:
        weight = self.gep_decorrelation
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise BlueInputError(f"training setting gep_decorrelation must be a number >= 0 (0 = off); got {weight!r}.")

