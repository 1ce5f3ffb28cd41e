"""BlueModel: the user-facing model (genes, cell types, preprocessing, network) and its files.

Files of a saved model (a directory):

* ``model.safetensors``: the network weights (safetensors; never pickle);
* ``model.json``: the model card: ``format_version``, ``name``, ``tissue``, ``description``,
  ``cell_types``, ``input_genes``, ``output_genes``, ``preprocessing``, ``network`` (BlueNet
  hyper-parameters), ``training`` (settings), ``provenance`` (training data, given by the caller),
  ``validation`` (metrics on validation pseudo-bulk), ``training_time_s``, ``blue_version``,
  ``weights_file`` and ``weights_sha256``.

Preprocessing (identical in training and inference, recorded in ``card['preprocessing']``): the bulk
over the model's input genes is scaled to counts per million over those genes (library-size
normalisation; genes missing from the bulk count as absent), ``log1p``, then standardised per sample
(mean 0, SD 1 across the present input genes; missing genes are set to 0, the sample mean). The
scale-free last step makes raw counts, CPM and TPM give the same input.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._types import log1p_cpm
from ..exceptions import BlueInputError, BlueModelError
from ..io.strictjson import dumps as strict_dumps
from ..io.files import check_model_name
from .card import final_card
from .gene_match import MIN_GENE_FRACTION, WARN_GENE_FRACTION, GeneMatch, gene_hint
from .model_format import BANK_FILE, CARD_FILE, FORMAT_VERSION, WEIGHTS_FILE, check_weights_header, read_card
from .network import BlueNet

__all__ = ["load_model_zip", "BlueModel", "save_model", "load_model", "load_installed", "resolve_model", "preprocess", "PREPROCESSING"]

logger = logging.getLogger(__name__)


#: The preprocessing recorded in every model card.
PREPROCESSING: dict[str, Any] = {
    "input_units": "linear-scale counts, CPM or TPM (log-scale input is converted back by read_bulk)",
    "library_size": "CPM over the model's input genes present in the sample",
    "log1p": True,
    "standardize": "per sample: (x - mean) / sd over present input genes; missing genes set to 0",
    "gep_scale": "network GEP output is log1p(CPM over output genes); reported as CPM (expm1)",
    "gep_loss": "MSE on log1p(CPM) per gene, averaged over samples weighted by the cell type's fraction "
    "(0 where absent), summed over cell types",
    "proportion_loss": "MSE on cell fractions, times proportion_weight",
}


def preprocess(values: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Turn bulk values over the model's input genes into the network input.

    Parameters
    ----------
    values
        ``(n_samples, G_in)`` non-negative linear-scale expression (counts, CPM or TPM), columns in the
        model's input-gene order; values of genes missing from the bulk are ignored.
    present
        ``(G_in,)`` bool, genes measured in the bulk (default: all).

    Returns
    -------
    ndarray
        ``(n_samples, G_in)`` float32: per-sample standardised log1p(CPM over present input genes).
    """
    x = np.asarray(values, dtype=np.float64)
    if present is None:
        present = np.ones(x.shape[1], dtype=bool)
    x = np.where(present[None, :], x, 0.0)
    x = log1p_cpm(x)
    sub = x[:, present]
    mean = sub.mean(axis=1, keepdims=True)
    sd = sub.std(axis=1, keepdims=True)
    z = np.divide(x - mean, sd, out=np.zeros_like(x), where=sd > 0)
    z[:, ~present] = 0.0
    return z.astype(np.float32)


class BlueModel:
    """A trained BLUE model: network plus everything needed to use it on bulk data.

    Parameters
    ----------
    name
        Model name (e.g. ``"pbmc"``).
    cell_types
        ``K`` cell-type names, the order of the network's outputs.
    input_genes
        ``G_in`` gene symbols the network reads.
    output_genes
        ``G_out`` gene symbols of the predicted GEPs.
    preprocessing
        Description of the preprocessing (see :data:`PREPROCESSING`).
    network
        The trained :class:`~blue_core.engine.network.BlueNet` (put in eval mode), or a list of them: an
        **ensemble** whose members share the genes, cell types and architecture (see
        :mod:`blue_core.engine.ensemble`). Proportions are the members' mean, GEPs their mean (CPM), and
        :func:`~blue_core.engine.inference.deconvolve` adds per-sample 90 % intervals from the members' spread.
    card
        The model card (see module docstring); ``card['validation']['fit_r_threshold']`` is the fit
        score under which a sample is flagged as poorly explained.
    """

    def __init__(
        self,
        name: str,
        cell_types: list[str],
        input_genes: list[str],
        output_genes: list[str],
        preprocessing: dict[str, Any],
        network: BlueNet | list[BlueNet],
        card: dict[str, Any] | None = None,
    ) -> None:
        self.name = check_model_name(name)
        self.cell_types = list(cell_types)
        self.input_genes = list(input_genes)
        self.output_genes = list(output_genes)
        self.preprocessing = dict(preprocessing)
        networks = list(network) if isinstance(network, (list, tuple)) else [network]
        if not networks:
            raise BlueModelError("a model needs at least one network.")
        self.networks: list[BlueNet] = [net.eval() for net in networks]
        self.card = dict(card or {})
        #: Pseudo-bulks for cohort adaptation (:class:`~blue_core.engine.adaptation.SimulationBank`), or None.
        self.adaptation_bank: Any = None
        #: Where the model was loaded from: "installed", "folder", or None (built in this process).
        self.source: str | None = None
        self.path: Path | None = None
        _check_consistent(self)

    def __repr__(self) -> str:
        return (
            f"BlueModel(name={self.name!r}, {len(self.cell_types)} cell types, "
            f"{len(self.input_genes):,} input genes, {len(self.output_genes):,} output genes)"
        )

    @property
    def network(self) -> BlueNet:
        """The (first) member's network; ``networks`` holds all members of an ensemble."""
        return self.networks[0]

    @property
    def n_members(self) -> int:
        """Number of networks (1 for a single model, >= 2 for an ensemble)."""
        return len(self.networks)

    def match_genes(self, genes: "list[str] | np.ndarray | pd.Index") -> GeneMatch:
        """Which input genes a bulk with these gene symbols measures.

        A multi-panel model (``card["input_panels"]``, trained with panel dropout) reads one cohort panel
        at a time: the panel with the largest matched fraction is chosen, and only its genes count.
        :func:`~blue_core.engine.inference.deconvolve` decides with this and the app's input report shows it.
        """
        import pandas as pd

        index = pd.Index([str(g) for g in genes])
        present = index.get_indexer(self.input_genes) >= 0
        panels = (self.card or {}).get("input_panels") or {}
        names = np.asarray(self.input_genes)
        masks = {name: np.isin(names, panel) for name, panel in panels.items() if panel}
        if not masks:
            return GeneMatch(present, int(present.sum()), len(self.input_genes), None)
        best = max(masks, key=lambda k: present[masks[k]].mean())
        present = present & masks[best]
        return GeneMatch(present, int(present.sum()), int(masks[best].sum()), best)

    def check_genes(self, genes: "list[str] | np.ndarray | pd.Index", *, source: str | None = None,
                    report: "Mapping[str, Any] | None" = None) -> GeneMatch:
        """The one overlap rule (issue 23): :meth:`match_genes`, refused under ``MIN_GENE_FRACTION`` of the model's
        (or matched panel's) input genes, warned under ``WARN_GENE_FRACTION``. ``deconvolve``, streaming, the CLI and
        the app's input report all decide with it. ``report`` (``read_bulk``'s ``uns["blue_input"]``) lets the
        refusal name the file's identifiers (Ensembl with versions, Entrez numbers, ...).

        Returns
        -------
        GeneMatch
            The genes found (within the matched panel).

        Raises
        ------
        BlueInputError
            Too few input genes measured; the message names the count, the need and the likely cause.

        Warns
        -----
        GeneOverlapWarning
            Fewer than ``WARN_GENE_FRACTION`` of the input genes measured.
        """
        import warnings

        from ..exceptions import GeneOverlapWarning

        match = self.match_genes(genes)
        where = f"{source}: " if source else ""
        panel = f" (its {match.panel} panel)" if match.panel else ""
        if match.n_matched == 0 or match.n_matched < MIN_GENE_FRACTION * match.n_expected:
            raise BlueInputError(
                f"{where}{match.n_matched:,} of {match.n_expected:,} model input genes matched the bulk genes{panel} "
                f"(need >= {MIN_GENE_FRACTION:.0%}): {gene_hint(list(genes), report)}.")
        if match.n_matched < WARN_GENE_FRACTION * match.n_expected:
            warnings.warn(
                f"{where}only {match.n_matched:,} of {match.n_expected:,} model input genes{panel} "
                f"({match.fraction:.0%}) are in the bulk; missing genes are treated as average, so estimates are less "
                "reliable.", GeneOverlapWarning, stacklevel=3)
        return match

    @property
    def reference_profiles(self) -> "pd.DataFrame | None":
        """``(G_out, K)`` each type's mean profile in the training reference(s), CPM over the output genes
        (``card["reference_profiles"]``), or None for a model saved without it."""
        import pandas as pd

        values = ((self.card or {}).get("reference_profiles") or {}).get("values")
        if not values:
            return None
        return pd.DataFrame({t: values[t] for t in self.cell_types if t in values}, index=self.output_genes)

    @property
    def fit_r_threshold(self) -> float:
        """Fit score (Pearson r) below which a sample is flagged ``poorly_explained``."""
        value = (self.card.get("validation") or {}).get("fit_r_threshold")
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else 0.5

    def predict(self, x: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on preprocessed input.

        Parameters
        ----------
        x
            ``(n, G_in)`` float32 output of :func:`preprocess`.
        batch_size
            Samples per forward pass.

        Returns
        -------
        tuple
            proportions ``(n, K)`` float32 and GEPs ``(n, K, G_out)`` float32 in CPM.
        """
        members, geps = self.predict_members(x, batch_size=batch_size)
        return members.mean(axis=0), geps

    def predict_members(self, x: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Run every member on preprocessed input.

        Returns
        -------
        tuple
            per-member proportions ``(M, n, K)`` float32 and the members' mean GEPs ``(n, K, G_out)``
            float32 in CPM.
        """
        n = x.shape[0]
        props = np.empty((self.n_members, n, len(self.cell_types)), dtype=np.float32)
        geps = np.empty((n, len(self.cell_types), len(self.output_genes)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
                total = None
                for m, net in enumerate(self.networks):
                    net.eval()
                    props[m, start : start + batch_size] = net.forward_proportions(batch).numpy()
                    cpm = net.forward_gep_cpm(batch)
                    total = cpm if total is None else total.add_(cpm)
                if self.n_members > 1:
                    total.div_(self.n_members)
                geps[start : start + batch_size] = total.numpy()
        return props, geps


def _check_consistent(model: BlueModel) -> None:
    config = model.network.config
    if any(net.config != config for net in model.networks[1:]):
        raise BlueModelError(f"the members of model {model.name!r} have different architectures; an ensemble's "
                             "members share one network configuration.")
    checks = (
        ("input genes", len(model.input_genes), config["n_input_genes"]),
        ("output genes", len(model.output_genes), config["n_output_genes"]),
        ("cell types", len(model.cell_types), config["n_cell_types"]),
    )
    for what, listed, expected in checks:
        if listed != expected:
            raise BlueModelError(
                f"model {model.name!r} lists {listed} {what} but its network has {expected}; "
                "the model files do not belong together — re-save or re-train the model."
            )
    for what, names in (("input genes", model.input_genes), ("output genes", model.output_genes),
                        ("cell types", model.cell_types)):
        if len(set(names)) != len(names):
            raise BlueModelError(f"model {model.name!r} has duplicated {what}; the model card is corrupted.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: BlueModel, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Save a model as ``directory/model.safetensors`` + ``directory/model.json``.

    Parameters
    ----------
    model
        The model to save.
    directory
        Target directory (created if needed).
    overwrite
        Replace an existing model in ``directory``; refused by default.

    Returns
    -------
    Path
        The directory.
    """
    directory = Path(directory)
    weights, card_path = directory / WEIGHTS_FILE, directory / CARD_FILE
    if not overwrite and (weights.exists() or card_path.exists()):
        raise BlueModelError(
            f"{directory} already holds a model; choose another directory or pass overwrite=True "
            "(--overwrite on the command line)."
        )
    check_model_name(model.name)
    if directory.exists() and not directory.is_dir():
        raise BlueModelError(f"{directory} is a file, not a folder; choose a folder to save the model in.")
    directory.mkdir(parents=True, exist_ok=True)
    # Both files are written under temporary names in the same folder and renamed into place when
    # complete, so a failure part-way never leaves a half-written weights file or card.
    tmp_weights, tmp_card = directory / f".{WEIGHTS_FILE}.tmp", directory / f".{CARD_FILE}.tmp"
    tmp_bank = directory / f".{BANK_FILE}.tmp"
    state = _state_dict(model)
    try:
        save_file(state, str(tmp_weights), metadata={"format": "pt", "blue_format_version": str(FORMAT_VERSION)})
        bank = None
        if model.adaptation_bank is not None:
            from .bank import write_bank

            bank = dict(n_samples=model.adaptation_bank.n_samples, sha256=write_bank(model.adaptation_bank, tmp_bank))
        card = final_card(model, weights_sha256=_sha256(tmp_weights), bank=bank)
        tmp_card.write_text(strict_dumps(card) + "\n", encoding="utf-8")
        os.chmod(tmp_weights, tmp_card.stat().st_mode & 0o777)  # safetensors writes 0600; follow the umask
        os.replace(tmp_weights, weights)
        if tmp_bank.exists():
            os.chmod(tmp_bank, tmp_card.stat().st_mode & 0o777)
            os.replace(tmp_bank, directory / BANK_FILE)
        else:
            (directory / BANK_FILE).unlink(missing_ok=True)
        os.replace(tmp_card, card_path)
    finally:
        for leftover in (tmp_weights, tmp_card, tmp_bank):
            leftover.unlink(missing_ok=True)
    model.card = card
    logger.info("saved model %r to %s (%.1f MB)", model.name, directory, weights.stat().st_size / 1e6)
    return directory


def _state_dict(model: BlueModel) -> dict[str, torch.Tensor]:
    """All weights; an ensemble's tensors are prefixed with the member (``m0.``, ``m1.``, ...)."""
    if model.n_members == 1:
        return {k: v.detach().contiguous().cpu() for k, v in model.network.state_dict().items()}
    return {f"m{i}.{k}": v.detach().contiguous().cpu()
            for i, net in enumerate(model.networks) for k, v in net.state_dict().items()}


def resolve_model(name_or_directory: str | os.PathLike) -> tuple[Path, str]:
    """Where a model argument points: ``(directory, "installed" | "folder")``.

    A bare name (``"pbmc"``) is looked up among the installed models only (``$BLUE_MODELS_DIR``, then
    the package's ``pretrained/``), never in the working directory; a folder is used only when the
    argument is written as a path (``./pbmc``, ``models/pbmc``, an absolute path, or a ``Path``).

    Returns
    -------
    tuple of (pathlib.Path, str)
        The model's directory and ``"installed"`` or ``"folder"``.

    Raises
    ------
    BlueModelError
        Unknown name (the message lists the installed models and, when a folder of that name exists
        here, says to write it as ``./NAME``), or a path that is not a folder.
    """
    from .store import find_model

    text = os.fspath(name_or_directory)
    as_path = (
        isinstance(name_or_directory, os.PathLike)
        or os.sep in text
        or "/" in text
        or text.startswith((".", "~"))
        or os.path.isabs(text)
    )
    if as_path:
        directory = Path(text).expanduser()
        if not directory.is_dir():
            raise BlueModelError(f"model folder {text} not found; pass an existing folder written by "
                                 "`blue train`, or a model name from `blue models`.")
        return directory, "folder"
    try:
        return find_model(text), "installed"
    except BlueModelError as err:
        if Path(text).is_dir():
            raise BlueModelError(
                f"{err} A folder {text!r} exists in the working directory: to use it, write it as a path "
                f"(./{text})."
            ) from None
        raise


def load_model(name_or_directory: str | os.PathLike) -> BlueModel:
    """Load an installed model by name, or a model folder given as a path.

    Names and paths are told apart by :func:`resolve_model`: ``"pbmc"`` is always the installed model,
    ``"./pbmc"`` the folder. The weights are read with ``safetensors`` only (no pickle). Before anything
    is allocated the card is checked against a schema (types, lengths, finite numbers) and the network it
    describes against the shapes in the safetensors header; then the sha256 of the weights is checked.
    The loaded model records where it came from in ``model.source`` (``"installed"`` or ``"folder"``)
    and ``model.path``.

    Returns
    -------
    BlueModel
        The model in eval mode, with its card (``model.card``) and its gene lists.

    Raises
    ------
    BlueModelError
        Unknown name, missing or corrupted files, a card that fails the schema, wrong format version or
        weights that do not match the card.
    """
    directory, source = resolve_model(name_or_directory)
    card_path, weights = directory / CARD_FILE, directory / WEIGHTS_FILE
    if not card_path.is_file():
        raise BlueModelError(f"{directory} has no {CARD_FILE}; a BLUE model directory holds {CARD_FILE} and "
                             f"{WEIGHTS_FILE} (written by save_model / blue train).")
    card = read_card(card_path)
    if not weights.is_file():
        raise BlueModelError(f"{directory} has no {WEIGHTS_FILE}; copy the weights next to {CARD_FILE}.")
    n_members = int(card.get("n_members") or 1)
    check_weights_header(weights, card["network"], n_members=n_members)
    digest = _sha256(weights)
    if digest != card["weights_sha256"]:
        raise BlueModelError(
            f"{weights} does not match its model card (sha256 {digest[:12]}... != {str(card['weights_sha256'])[:12]}...): "
            "the file is corrupted or was replaced. Restore it or re-train the model."
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise BlueModelError(f"{weights} cannot be read as safetensors ({err}); restore it or re-train.") from err
    try:
        if n_members == 1:
            network: BlueNet | list[BlueNet] = BlueNet(**card["network"])
            network.load_state_dict(state, strict=True)
        else:
            network = []
            for i in range(n_members):
                prefix = f"m{i}."
                member = BlueNet(**card["network"])
                member.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
                network.append(member)
    except (TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise BlueModelError(
            f"the weights in {weights} do not fit the network described in {CARD_FILE} ({first}); "
            "the files do not belong together — re-train the model."
        ) from err
    model = BlueModel(
        name=card["name"],
        cell_types=card["cell_types"],
        input_genes=card["input_genes"],
        output_genes=card["output_genes"],
        preprocessing=card.get("preprocessing", PREPROCESSING),
        network=network,
        card=card,
    )
    bank = card.get("adaptation_bank")
    if isinstance(bank, dict) and bank.get("sha256"):
        from .bank import read_bank

        model.adaptation_bank = read_bank(directory / BANK_FILE, n_input_genes=len(model.input_genes),
                                          n_cell_types=len(model.cell_types), sha256=str(bank["sha256"]))
    model.source, model.path = source, directory
    logger.info("loaded %r (%s) from %s", model, source, directory)
    return model


#: Largest model zip :func:`load_model_zip` accepts, compressed and uncompressed (bytes).
MAX_MODEL_ZIP_BYTES = 200 * 1024 * 1024


def load_installed(*, loader: Callable[[str], BlueModel] | None = None) -> list[BlueModel]:
    """Every installed model (:func:`~blue_core.engine.store.list_models`), loaded with ``loader`` (default
    :func:`load_model`; the app passes its cached loader). A model that cannot be loaded is left out with a
    logged warning: a broken install must not break a recommendation.

    Returns
    -------
    list of BlueModel
        In the store's order.
    """
    from .store import list_models

    load = loader or load_model
    models = []
    for name in (str(n) for n in list_models()["name"]):
        try:
            models.append(load(name))
        except (BlueModelError, OSError, ValueError) as err:
            logger.warning("model %s left out: %s", name, err)
    return models


def load_model_zip(data: bytes, *, max_bytes: int = MAX_MODEL_ZIP_BYTES) -> BlueModel:
    """Load a model from the zip BLUE studio's "Download the model" gives (``<name>/model.json`` +
    ``<name>/model.safetensors``).

    Safe for a file a stranger uploads: the archive's size and every member's declared size are limited, only
    those two files are read (no other file, no absolute path, no ``..``, no link is accepted), the members are
    read into a fresh temporary folder whose names this code chooses, and the model then passes every check of
    :func:`load_model` (card schema, shapes, weights' sha256; safetensors only, never pickle).

    Parameters
    ----------
    data
        The zip file's bytes.
    max_bytes
        Ceiling on the zip's size and on the sum of its members' uncompressed sizes.

    Returns
    -------
    BlueModel
        The model (``source`` = ``"folder"``; its temporary folder is gone once loaded).

    Raises
    ------
    BlueModelError
        Not a zip, too large, unexpected or unsafe members, or a model that fails the checks; the message says
        what to upload instead.
    """
    import tempfile

    from ..io.files import extract_zip

    hint = "Upload the zip that 'Download the model' produced (one folder with model.json and model.safetensors)."
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"  # a name this code chose
        folder.mkdir()
        try:
            written = extract_zip(data, folder, allowed={CARD_FILE, WEIGHTS_FILE, BANK_FILE}, max_bytes=max_bytes,
                                  what="model zip", hint=hint)
        except BlueInputError as err:
            raise BlueModelError(str(err)) from None
        missing = sorted({CARD_FILE, WEIGHTS_FILE} - set(written))
        if missing:
            raise BlueModelError(f"the model zip lacks {missing}. {hint}")
        return load_model(folder)
