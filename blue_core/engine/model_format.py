"""The model folder format: file names, format version, and the checks a card and a weights header pass before
anything they describe is allocated (a card is strict JSON; weights are safetensors, never pickle).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from .._version import __version__
from ..exceptions import BlueModelError
from .network import BlueNet

__all__ = ["FORMAT_VERSION", "WEIGHTS_FILE", "CARD_FILE", "BANK_FILE", "MAX_CARD_BYTES", "read_card", "check_card",
           "check_weights_header"]


#: Version of the model file layout; bumped when a saved model can no longer be read as is.
FORMAT_VERSION = 1


WEIGHTS_FILE = "model.safetensors"


CARD_FILE = "model.json"


#: Optional third file: the pseudo-bulks cohort adaptation mixes with (``blue_core.engine.adaptation``).
BANK_FILE = "adaptation.safetensors"


#: A model card larger than this is refused before it is parsed.
MAX_CARD_BYTES = 64_000_000


_NETWORK_INTS = ("n_input_genes", "n_output_genes", "n_cell_types", "hidden", "n_layers", "signal_length",
                 "base_channels", "depth", "kernel_size")


def _reject_constant(token: str) -> None:
    raise ValueError(f"{token} is not allowed in a model card (strict JSON: use null)")


def check_card(card: Any, card_path: str | os.PathLike = CARD_FILE) -> None:
    """Check a model card's schema before anything it describes is allocated.

    Checks: a JSON object of the supported ``format_version``; ``name`` a safe model name;
    ``cell_types`` / ``input_genes`` / ``output_genes`` non-empty lists of unique strings whose lengths
    match ``network``; ``network`` exactly the :class:`~blue_core.engine.network.BlueNet` arguments, integers
    (``dropout`` a number in [0, 1)); ``weights_sha256`` 64 hex digits; ``validation.fit_r_threshold`` a
    finite number or null; ``input_panels`` null or lists of input genes.

    Raises
    ------
    BlueModelError
        The first rule broken, naming the field.
    """
    from ..io.files import is_model_name

    def fail(problem: str) -> None:
        raise BlueModelError(f"{card_path}: {problem}; the model card is invalid — restore it or re-train the model.")

    if not isinstance(card, dict):
        fail("expected a JSON object")
    version = card.get("format_version")
    if version != FORMAT_VERSION:
        raise BlueModelError(
            f"{card_path} has format_version {version!r}; this BLUE studio ({__version__}) reads format "
            f"{FORMAT_VERSION}. Re-train the model with this version or use the matching BLUE studio."
        )
    missing = [k for k in ("name", "cell_types", "input_genes", "output_genes", "network", "weights_sha256")
               if k not in card]
    if missing:
        raise BlueModelError(f"{card_path} lacks {missing}; the model card is incomplete — re-save the model.")
    if not is_model_name(card["name"]):
        fail(f"name {str(card['name'])[:60]!r} is not a safe model name")
    for key in ("cell_types", "input_genes", "output_genes"):
        value = card[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            fail(f"{key} must be a non-empty list of names")
        if len(set(value)) != len(value):
            fail(f"{key} has duplicated names")
    network = card["network"]
    if not isinstance(network, dict):
        fail("network must be an object of BlueNet settings")
    expected = set(_NETWORK_INTS) | {"dropout"}
    if set(network) != expected:
        fail(f"network must hold exactly {sorted(expected)}")
    for key in _NETWORK_INTS:
        value = network[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000_000:
            fail(f"network.{key} must be an integer in [1, 10,000,000], got {str(value)[:40]!r}")
    dropout = network["dropout"]
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        fail(f"network.dropout must be a number in [0, 1), got {str(dropout)[:40]!r}")
    for key, listed in (("n_input_genes", "input_genes"), ("n_output_genes", "output_genes"),
                        ("n_cell_types", "cell_types")):
        if network[key] != len(card[listed]):
            fail(f"network.{key} = {network[key]:,} but {listed} lists {len(card[listed]):,}")
    if not isinstance(card["weights_sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", card["weights_sha256"]):
        fail("weights_sha256 must be 64 hexadecimal digits")
    validation = card.get("validation")
    if validation is not None and not isinstance(validation, dict):
        fail("validation must be an object")
    threshold = (validation or {}).get("fit_r_threshold")
    if threshold is not None and (not isinstance(threshold, (int, float)) or isinstance(threshold, bool)
                                  or not math.isfinite(threshold)):
        fail(f"validation.fit_r_threshold must be a number or null, got {str(threshold)[:40]!r}")
    n_members = card.get("n_members", 1)
    if n_members is not None and (not isinstance(n_members, int) or isinstance(n_members, bool) or not 1 <= n_members <= 64):
        fail(f"n_members must be an integer in [1, 64], got {str(n_members)[:40]!r}")
    intervals = card.get("intervals")
    if intervals is not None:
        sigma = intervals.get("sigma_by_type") if isinstance(intervals, dict) else None
        ok = isinstance(sigma, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             and math.isfinite(v) and v >= 0 for v in sigma.values())
        if not ok or not isinstance(intervals.get("z"), (int, float)):
            fail("intervals must hold z (a number) and sigma_by_type (non-negative numbers)")
    profiles = card.get("reference_profiles")
    if profiles is not None:
        values = profiles.get("values") if isinstance(profiles, dict) else None
        if not isinstance(values, dict) or not all(
            t in card["cell_types"] and isinstance(v, list) and len(v) == len(card["output_genes"]) for t, v in values.items()
        ):
            fail("reference_profiles.values must map cell types to one number per output gene")
    panels = card.get("input_panels")
    if panels is not None:
        genes = set(card["input_genes"])
        if not isinstance(panels, dict) or not all(
            isinstance(v, list) and v and all(isinstance(g, str) and g in genes for g in v) for v in panels.values()
        ):
            fail("input_panels must map panel names to non-empty lists of input genes")
    for key in ("tissue", "description"):
        if card.get(key) is not None and not isinstance(card[key], str):
            fail(f"{key} must be text")


def check_weights_header(weights: Path, network: dict[str, Any], *, n_members: int = 1) -> None:
    """Compare the tensor names, shapes and dtypes in the safetensors header with the card's network.

    The expected shapes come from a :class:`BlueNet` built on PyTorch's ``meta`` device, which
    allocates no memory; the weights themselves are not read.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            found = {k: (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise BlueModelError(f"{weights} cannot be read as safetensors ({err}); restore it or re-train.") from err
    try:
        with torch.device("meta"):
            one = {k: tuple(v.shape) for k, v in BlueNet(**network).state_dict().items()}
        expected = one if n_members == 1 else {f"m{i}.{k}": v for i in range(n_members) for k, v in one.items()}
    except (TypeError, ValueError) as err:
        raise BlueModelError(f"the network in {weights.parent / CARD_FILE} is invalid ({err}); re-train the model.") from err
    if set(found) != set(expected):
        extra, lacking = sorted(set(found) - set(expected))[:3], sorted(set(expected) - set(found))[:3]
        raise BlueModelError(
            f"the weights in {weights} do not fit the network described in {CARD_FILE} (unexpected {extra}, "
            f"missing {lacking}); the files do not belong together — re-train the model."
        )
    for key, shape in expected.items():
        if found[key][0] != shape or found[key][1] != "F32":
            raise BlueModelError(
                f"the weights in {weights} do not fit the network described in {CARD_FILE} ({key}: "
                f"{found[key][1]} {found[key][0]} in the file, F32 {shape} in the card); the files do not belong "
                "together — re-train the model."
            )


def read_card(card_path: Path) -> dict[str, Any]:
    """A model card read as strict JSON (size-capped) and checked (:func:`check_card`).

    Returns
    -------
    dict
        The card.

    Raises
    ------
    BlueModelError
        Too large, not JSON (or with NaN / Infinity), or failing the schema.
    """
    if card_path.stat().st_size > MAX_CARD_BYTES:
        raise BlueModelError(f"{card_path} is {card_path.stat().st_size / 1e6:.0f} MB; a model card is at most "
                             f"{MAX_CARD_BYTES / 1e6:.0f} MB. The file is not a BLUE model card.")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
        raise BlueModelError(f"{card_path} is not valid JSON ({err}); restore the file or re-train the model.") from err
    check_card(card, card_path)
    return card
