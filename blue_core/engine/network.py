"""BlueNet: the BLUE network (tensors only; genes, cell types and preprocessing live in ``model.py``).

Two branches share the preprocessed input ``x`` (batch, G_in):

* proportions: Linear -> [SiLU -> Linear] x n_layers -> softmax over the K cell types;
* GEPs: Linear projection of ``x`` to a 1-D signal of length L, a U-Net of Conv1d down/up blocks with
  skip connections (channels ``base_channels * 2**level``), a 1x1 convolution to one channel per cell
  type, then a Linear map L -> G_out shared by the cell types plus a per-cell-type bias (each type's
  baseline profile), and softplus so that the output is non-negative. The GEP output is on the
  log1p(CPM) scale (see ``training.py``).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .config import NetworkConfig

__all__ = ["BlueNet", "SeededDropout"]


class SeededDropout(nn.Module):
    """Dropout that draws its mask from an explicit ``torch.Generator`` when one is attached.

    ``nn.Dropout`` always uses PyTorch's process-wide generator, which every thread of a server
    shares: two trainings at once would interleave their draws and neither would be reproducible.
    Training attaches a private generator (``generator``); without one this falls back to the global
    generator like ``nn.Dropout``. The arithmetic is that of PyTorch's CPU dropout (a Bernoulli(1 - p)
    mask divided by 1 - p), so a private generator seeded like the global one gives identical results.
    Holds no parameters or buffers: state dicts are unchanged.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            return nn.functional.dropout(x, self.p, True)
        noise = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * noise.div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _conv_block(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    padding = kernel_size // 2
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding),
        nn.GroupNorm(1, out_channels),
        nn.SiLU(),
        nn.Conv1d(out_channels, out_channels, kernel_size, padding=padding),
        nn.SiLU(),
    )


class _UNet1d(nn.Module):
    """1-D U-Net: (batch, 1, L) -> (batch, out_channels, L)."""

    def __init__(self, out_channels: int, base_channels: int, depth: int, kernel_size: int) -> None:
        super().__init__()
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.stem = _conv_block(1, widths[0], kernel_size)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool1d(2), _conv_block(widths[i], widths[i + 1], kernel_size)) for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose1d(widths[i + 1], widths[i], kernel_size=2, stride=2) for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(_conv_block(2 * widths[i], widths[i], kernel_size) for i in reversed(range(depth)))
        self.head = nn.Conv1d(widths[0], out_channels, kernel_size=1)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        h = self.stem(signal)
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        for up, merge in zip(self.up, self.merge):
            h = merge(torch.cat([up(h), skips.pop()], dim=1))
        return self.head(h)


class BlueNet(nn.Module):
    """BLUE network: (batch, G_in) -> proportions (batch, K), GEPs (batch, K, G_out).

    Parameters
    ----------
    n_input_genes
        ``G_in``, width of the (preprocessed) input.
    n_output_genes
        ``G_out``, genes of each predicted GEP.
    n_cell_types
        ``K`` (>= 2).
    hidden
        Width of the proportion MLP.
    n_layers
        Hidden layers of the proportion MLP (>= 1).
    signal_length
        ``L``, length of the 1-D signal the U-Net works on; must be a multiple of ``2**depth``.
    base_channels
        Channels of the first U-Net level (doubled at each level down).
    depth
        Number of down-sampling steps of the U-Net (>= 1).
    kernel_size
        Odd Conv1d kernel size.
    dropout
        Dropout on the input projections (training only).
    generator
        Draw the initial weights (and later dropout masks) from this generator instead of PyTorch's
        process-wide one (see :meth:`reset_parameters`); not part of ``config``.
    """

    def __init__(
        self,
        n_input_genes: int,
        n_output_genes: int,
        n_cell_types: int,
        *,
        hidden: int = NetworkConfig.hidden,
        n_layers: int = NetworkConfig.n_layers,
        signal_length: int = NetworkConfig.signal_length,
        base_channels: int = NetworkConfig.base_channels,
        depth: int = NetworkConfig.depth,
        kernel_size: int = NetworkConfig.kernel_size,
        dropout: float = NetworkConfig.dropout,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("n_input_genes", n_input_genes, 1),
            ("n_output_genes", n_output_genes, 1),
            ("n_cell_types", n_cell_types, 2),
            ("hidden", hidden, 1),
            ("n_layers", n_layers, 1),
            ("signal_length", signal_length, 2),
            ("base_channels", base_channels, 1),
            ("depth", depth, 1),
            ("kernel_size", kernel_size, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if signal_length % 2**depth:
            padded = -(-signal_length // 2**depth) * 2**depth
            raise ValueError(
                f"signal_length ({signal_length}) must be a multiple of 2**depth = {2**depth} so that the U-Net "
                f"can halve it {depth} times; use signal_length={padded} or a smaller depth."
            )
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-length convolutions), got {kernel_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config = dict(
            n_input_genes=n_input_genes,
            n_output_genes=n_output_genes,
            n_cell_types=n_cell_types,
            hidden=hidden,
            n_layers=n_layers,
            signal_length=signal_length,
            base_channels=base_channels,
            depth=depth,
            kernel_size=kernel_size,
            dropout=dropout,
        )
        # With a private generator the layers are built on the meta device (no memory, no draws from the
        # process-wide generator), then materialised and initialised from ``generator``.
        with torch.device("meta") if generator is not None else contextlib.nullcontext():
            self._build(n_input_genes, n_output_genes, n_cell_types, hidden, n_layers, signal_length,
                        base_channels, depth, kernel_size, dropout)
        if generator is not None:
            self.to_empty(device="cpu")
            self.reset_parameters(generator=generator)

    def _build(self, n_input_genes: int, n_output_genes: int, n_cell_types: int, hidden: int, n_layers: int,
               signal_length: int, base_channels: int, depth: int, kernel_size: int, dropout: float) -> None:
        layers: list[nn.Module] = [SeededDropout(dropout), nn.Linear(n_input_genes, hidden)]
        for _ in range(n_layers - 1):
            layers += [nn.SiLU(), nn.Linear(hidden, hidden)]
        layers += [nn.SiLU(), nn.Linear(hidden, n_cell_types)]
        self.proportion_mlp = nn.Sequential(*layers)
        self.projection = nn.Sequential(SeededDropout(dropout), nn.Linear(n_input_genes, signal_length))
        self.unet = _UNet1d(n_cell_types, base_channels, depth, kernel_size)
        self.to_genes = nn.Linear(signal_length, n_output_genes)
        self.type_bias = nn.Parameter(torch.zeros(n_cell_types, n_output_genes))

    @torch.no_grad()
    def reset_parameters(self, *, generator: torch.Generator) -> None:
        """Re-initialise every layer from ``generator`` (PyTorch's default rules, in layer order).

        Linear and convolution weights: Kaiming-uniform with ``a = sqrt(5)``; biases uniform in
        ``+-1/sqrt(fan_in)``; normalisation layers ones/zeros; ``type_bias`` zeros. Drawn in the order
        the layers were built, so a generator seeded with ``s`` gives the same weights as
        ``torch.manual_seed(s)`` before construction, without touching the process-wide generator.
        The generator is also attached to the dropout layers (see :class:`SeededDropout`).
        """
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.ConvTranspose1d)):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.type_bias.zero_()
        self.set_generator(generator)

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Attach ``generator`` to every dropout layer (``None``: use PyTorch's global generator)."""
        for module in self.modules():
            if isinstance(module, SeededDropout):
                module.generator = generator

    def forward_proportions(self, x: torch.Tensor) -> torch.Tensor:
        """Proportion branch only: ``(batch, G_in) -> (batch, K)``, rows sum to 1."""
        return torch.softmax(self.proportion_mlp(x), dim=-1)

    def forward_gep(self, x: torch.Tensor) -> torch.Tensor:
        """GEP branch only: ``(batch, G_in) -> (batch, K, G_out)``, log1p(CPM) scale, >= 0."""
        channels = self.unet(self.projection(x).unsqueeze(1))
        return nn.functional.softplus(self.to_genes(channels) + self.type_bias)

    def forward_gep_cpm(self, x: torch.Tensor) -> torch.Tensor:
        """GEP branch on the linear scale: ``expm1(forward_gep(x))`` computed as ``exp(z)``, ``(batch, K, G_out)`` CPM.

        ``expm1(softplus(z)) = expm1(log1p(exp(z))) = exp(z)``: one pass instead of two over the largest tensor of
        inference, equal to float32 rounding (relative difference below 1e-6; ``bench/inference_speed.py``).
        """
        channels = self.unet(self.projection(x).unsqueeze(1))
        return torch.exp(self.to_genes(channels).add_(self.type_bias))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(proportions (batch, K), GEPs (batch, K, G_out) on log1p(CPM) scale, >= 0)``."""
        return self.forward_proportions(x), self.forward_gep(x)

    @torch.no_grad()
    def init_type_baseline(self, mean_gep: torch.Tensor) -> None:
        """Start the per-cell-type bias at each type's mean GEP (log1p CPM), ``(K, G_out)``.

        Without it Adam needs thousands of steps to move the bias from 0 to values of 5-10; with it
        the U-Net only has to learn each sample's deviation from its type's baseline.
        """
        if tuple(mean_gep.shape) != tuple(self.type_bias.shape):
            raise ValueError(f"mean_gep must have shape {tuple(self.type_bias.shape)}, got {tuple(mean_gep.shape)}")
        target = mean_gep.to(self.type_bias.dtype).clamp(min=1e-4)
        self.type_bias.copy_(target + torch.log(-torch.expm1(-target)))  # inverse softplus
        self.to_genes.weight.mul_(0.1)
        self.to_genes.bias.zero_()

    def branch_parameters(self, branch: str) -> list[nn.Parameter]:
        """Parameters of one branch (``"proportion"`` or ``"gep"``); the two sets are disjoint."""
        if branch == "proportion":
            return list(self.proportion_mlp.parameters())
        if branch == "gep":
            return [*self.projection.parameters(), *self.unet.parameters(), *self.to_genes.parameters(),
                    self.type_bias]
        raise ValueError(f"branch must be 'proportion' or 'gep', got {branch!r}")
