"""Configuration objects: the single home of defaults that several modules share.

``NetworkConfig`` holds the BlueNet hyper-parameters: :class:`~blue_core.module.BlueNet`'s signature,
:func:`~blue_core.training.train_model` (``network=``) and recipes (``[network]``) all take their defaults from
it. It is frozen; build a variant with :func:`dataclasses.replace` or :meth:`NetworkConfig.from_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .exceptions import BlueInputError

__all__ = ["NetworkConfig", "from_settings"]


def from_settings(cls: type, values: Mapping[str, Any] | None, *, what: str) -> Any:
    """``cls(**values)`` for a frozen settings dataclass; a key that is not one of its fields is refused.

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


@dataclass(frozen=True)
class NetworkConfig:
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

    def as_dict(self) -> dict[str, Any]:
        """The settings as keyword arguments of ``BlueNet``.

        Returns
        -------
        dict
            Field name -> value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None = None) -> NetworkConfig:
        """Defaults overridden by ``values`` (e.g. a recipe's ``[network]`` section or ``train_model(network=)``).

        Returns
        -------
        NetworkConfig
            The merged settings.

        Raises
        ------
        BlueInputError
            A key that is not a network setting (the message lists the valid ones).
        """
        return from_settings(cls, values, what="network")
