"""3x3 convolutions by Winograd's minimal filtering, F(4x4, 3x3), for float32 prediction on CPUs.

A direct 3x3 convolution spends 9 multiplications per output and input channel.
Winograd's F(4x4, 3x3) computes a 4x4 block of outputs from a 6x6 block of
input with 36 instead of 144, a quarter: each block is transformed
(``B^T d B``), multiplied channel by channel with the transformed kernel
(``G g G^T``, once per model) as 36 independent matrix products, and transformed
back (``A^T m A``). On CPUs without native bfloat16 (AVX2-only), where float32
already runs near the cores' peak, that cut in work is what makes prediction
faster. Results match the direct convolution to about 1e-5 relative: the
interpolation points 0, +-1, +-2 keep the transforms well conditioned in float32.

A convolution dilated by ``d`` is an undilated one on each of the ``d x d``
interleaved sub-grids of its input (rows and columns ``p, p+d, p+2d, ...``), so
the dilated 3x3 convolutions of DeepLab's backbone take the same route.
"""

from __future__ import annotations

import torch
from torch import nn

# The transforms for output blocks of 4 and a 3-tap kernel, interpolation points 0, 1, -1, 2, -2 and infinity.
_BT = (
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)
_G = (
    (1 / 4, 0, 0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0, 0, 1),
)
_AT = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0),
    (0, 1, -1, 8, -8, 1),
)
BLOCK = 4  # outputs per block side
_SPAN = BLOCK + 2  # inputs per block side
# Column of the transformed products that A^T . A maps to 1 at every output: where a bias goes in.
_ALL_ONES = 1 * _SPAN + 1

# Below this many input channels the transforms cost more than the products save (measured: 64 channels
# at 128 x 128 px ran 0.76x on an AMX CPU, 1.17x on AVX2; 128 channels at 64 x 64 px 1.33x and 2.0x).
MIN_CHANNELS = 128


def _kron(rows: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    m = torch.tensor(rows, dtype=torch.float64)
    return torch.kron(m, m)


_INPUT_TRANSFORM = _kron(_BT).float()  # (36, 36): a flattened 6x6 input block to its transform
_OUTPUT_TRANSFORM = _kron(_AT).float()  # (16, 36): 36 products back to a flattened 4x4 output block


def transform_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A (K, C, 3, 3) kernel as the 36 (C, K) matrices that multiply the transformed input."""
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,kcij,bj->abck", g, weight.detach().double(), g)
    return u.reshape(_SPAN * _SPAN, weight.shape[1], weight.shape[0]).float().contiguous()


def conv3x3(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, dilation: int) -> torch.Tensor:
    """``conv2d(x, weight, bias, padding=dilation, dilation=dilation)`` with ``kernel = transform_kernel(weight)``.

    ``x`` is float32 (N, C, H, W); the result (N, K, H, W) is channels-last and agrees with the
    direct convolution to about 1e-5 of its largest value.
    """
    n, c, h, w = x.shape
    k, d = kernel.shape[2], dilation
    rows, cols = -(-h // d), -(-w // d)  # each sub-grid's size
    blocks_h, blocks_w = -(-rows // BLOCK), -(-cols // BLOCK)
    span_h, span_w = blocks_h * BLOCK + 2, blocks_w * BLOCK + 2  # a sub-grid with its padding
    padded = x.new_zeros(n, span_h * d, span_w * d, c)
    padded[:, d : d + h, d : d + w] = x.permute(0, 2, 3, 1)
    # padded row r * d + p is row r of sub-grid p; 6x6 blocks start every 4 rows and columns of a sub-grid.
    s_n, s_r, s_pr, s_c, s_pc, s_ch = padded.view(n, span_h, d, span_w, d, c).stride()
    blocks = padded.as_strided(
        (_SPAN, _SPAN, n, d, d, blocks_h, blocks_w, c),
        (s_r, s_c, s_n, s_pr, s_pc, s_r * BLOCK, s_c * BLOCK, s_ch),
    ).reshape(_SPAN * _SPAN, -1)
    count = blocks.shape[1] // c
    transformed = (_INPUT_TRANSFORM.to(x.device) @ blocks).view(_SPAN * _SPAN, count, c)
    products = torch.bmm(transformed, kernel)  # (36, blocks, K)
    if bias is not None:
        products[_ALL_ONES] += bias
    out = (_OUTPUT_TRANSFORM.to(x.device) @ products.view(_SPAN * _SPAN, count * k)).view(
        BLOCK, BLOCK, n, d, d, blocks_h, blocks_w, k
    )
    # Output row (block * 4 + a) * d + p comes from row a of a block of sub-grid p.
    out = out.permute(2, 5, 0, 3, 6, 1, 4, 7).reshape(n, blocks_h * BLOCK * d, blocks_w * BLOCK * d, k)
    return out[:, :h, :w].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)  # no-op unless cropped


def same_size_3x3(module: nn.Module) -> bool:
    """Whether ``module`` is a plain ``nn.Conv2d`` (no subclass) 3x3, stride 1, one group, zero padding = dilation.

    Such a convolution keeps the input's size; this module and ``inference.TapConv2d``
    compute exactly these (subclasses may compute something else from their weights).
    """
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.groups == 1
        and module.padding == module.dilation
        and module.padding_mode == "zeros"
    )


class WinogradConv2d(nn.Module):
    """A float32 3x3 convolution (stride 1, zero padding = dilation) computed by ``conv3x3``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.dilation = conv.dilation[0]
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.register_buffer("kernel", transform_kernel(conv.weight.float()))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().float().clone())

    @staticmethod
    def fits(module: nn.Module, min_channels: int = MIN_CHANNELS) -> bool:
        """Whether ``module`` is a float32 ``same_size_3x3`` convolution, equally dilated, with enough channels to gain."""
        return (
            same_size_3x3(module)
            and module.weight.dtype == torch.float32
            and module.dilation[0] == module.dilation[1]
            and module.in_channels >= min_channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3x3(x.float(), self.kernel, self.bias, self.dilation)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, dilation={self.dilation}"

