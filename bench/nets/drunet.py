"""The noise-level-conditioned denoiser of the ``pnp`` method: a small DRUNet and its checkpoint format.

The architecture follows DRUNet (Zhang et al., "Plug-and-Play Image Restoration
with Deep Denoiser Prior", TPAMI 2021, the DPIR code): a U-Net whose input is
the noisy RGB image concatenated with a constant noise-level map ``σ`` (one
network for all noise levels); each scale has ``blocks`` bias-free residual
blocks (conv–ReLU–conv plus the input), scales are joined by 2×2 strided
convolutions down and 2×2 transposed convolutions up, and the skip connections
are additive. One change: the output is ``y + tail(…)``, a global skip from
the noisy input (as DnCNN's residual learning) with the last convolution
starting at zero, so training starts from the identity and converges within a
CPU budget; the published network predicts the image directly. The published network has 4 scales of (64, 128, 256, 512)
channels and 4 blocks per scale (32.6 M parameters); the CPU variant trained
here keeps the structure with (32, 64, 128, 256) channels and 2 blocks (4.3 M
parameters, about 8× fewer multiply-adds per pixel), see :data:`CPU_ARCH`.

:class:`UNetRes` is the published network itself, with the module names of the official code
(DPIR and KAIR ``models/network_unet.py``, built as in ``main_dpir_*.py``: ``UNetRes(in_nc=4,
out_nc=3, nc=[64, 128, 256, 512], nb=4, act_mode='R', downsample_mode='strideconv',
upsample_mode='convtranspose')``, bias-free), so that the released ``drunet_color.pth`` loads
with ``strict=True``: :func:`load_denoiser` reads either format (``arch``).

Images are RGB on [0, 1]; ``sigma`` is on the [0, 1] scale as well (DPIR's
``σ/255``). Checkpoints are read with ``torch.load(weights_only=True)``.
Training lives in :mod:`bench.training.drunet`, restoration in :mod:`bench.solvers.pnp`.

Example:
    >>> import torch
    >>> net = DRUNet(channels=(4, 8, 8, 8), blocks=1).eval()
    >>> tuple(net(torch.rand(1, 3, 16, 16), 0.1).shape)
    (1, 3, 16, 16)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import checkpoints
from bench.checkpoints import ModelCache
from bench.errors import CheckpointError
from bench.nets.model_files import build_model, read_model, save_model

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "methods" / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "drunet_cpu.pt"
FORMAT = "restoration-bench/drunet"
OFFICIAL_ARCH = {"channels": [64, 128, 256, 512], "blocks": 4}
CPU_ARCH = {"channels": [32, 64, 128, 256], "blocks": 2}


def conv3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class ResBlock(nn.Module):
    """``x + conv(relu(conv(x)))``, bias-free as in DRUNet."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv3(channels, channels), nn.ReLU(inplace=True), conv3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DRUNet(nn.Module):
    """U-Net denoiser conditioned on a noise-level map: ``D(y, σ)`` with ``y`` RGB in [0, 1], ``σ`` on [0, 1].

    Args:
        channels: feature channels of the 4 scales (published: 64, 128, 256, 512).
        blocks: residual blocks per scale and direction (published: 4).

    Inputs whose sides are not multiples of 8 are padded by replication and cropped back.

    Example:
        >>> import torch
        >>> net = DRUNet(channels=(4, 8, 8, 8), blocks=1)
        >>> net.config
        {'channels': [4, 8, 8, 8], 'blocks': 1}
        >>> tuple(net(torch.rand(2, 3, 13, 10), torch.tensor([0.1, 0.2])).shape)
        (2, 3, 13, 10)
    """

    def __init__(self, channels: tuple[int, ...] | list[int] = (64, 128, 256, 512), blocks: int = 4):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels={channels} must be 4 positive numbers (one per scale)")
        if blocks < 1:
            raise ValueError(f"blocks={blocks} must be >= 1")
        self.channels, self.blocks = channels, int(blocks)
        c1, c2, c3, c4 = channels
        self.head = conv3(4, c1)
        self.down = nn.ModuleList(
            nn.Sequential(*[ResBlock(a) for _ in range(blocks)], nn.Conv2d(a, b, 2, stride=2, bias=False))
            for a, b in ((c1, c2), (c2, c3), (c3, c4))
        )
        self.body = nn.Sequential(*[ResBlock(c4) for _ in range(blocks)])
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(b, a, 2, stride=2, bias=False), *[ResBlock(a) for _ in range(blocks)])
            for a, b in ((c3, c4), (c2, c3), (c1, c2))
        )
        self.tail = conv3(c1, 3)
        nn.init.zeros_(self.tail.weight)  # with the global skip below, the untrained network is the identity

    @property
    def config(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "blocks": self.blocks}

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        n, _, h, w = y.shape
        level = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).reshape(-1, 1, 1, 1).expand(n, 1, h, w)
        x = torch.cat([y, level], dim=1)
        ph, pw = -h % 8, -w % 8
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        x1 = self.head(x)
        x2 = self.down[0](x1)
        x3 = self.down[1](x2)
        x4 = self.down[2](x3)
        x = self.body(x4)
        x = self.up[0](x + x4)
        x = self.up[1](x + x3)
        x = self.up[2](x + x2)
        return y + self.tail(x + x1)[..., :h, :w]


def save_checkpoint(
    model: DRUNet, path: str | os.PathLike, meta: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> str:
    """Write ``model`` atomically (``extra``: resume state, ignored when loading); returns the file's sha256."""
    return save_model(model, path, FORMAT, model.config, meta, extra)


HINT = "train one with `bench train drunet` or point --set pnp.checkpoint=PATH at a valid file"


def read_payload(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked info (config, meta, path) and state dict of the DRUNet checkpoint at ``path``, uncached."""
    return read_model(path, FORMAT, "DRUNet", HINT)


PAYLOADS: ModelCache[tuple[dict[str, Any], dict[str, torch.Tensor]]] = ModelCache(read_payload)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[DRUNet, dict[str, Any]]:
    """The DRUNet stored at ``path`` (eval mode, no gradients) and its info (config, meta, path).

    Raises :class:`bench.errors.CheckpointError` for a missing, truncated or foreign file.
    """
    info, state = PAYLOADS.get(Path(path))
    model = build_model(lambda c: DRUNet(c["channels"], c["blocks"]), info, state, "DRUNet")
    return model.to(device), info


class OfficialResBlock(nn.Module):
    """``x + res(x)``, ``res`` = conv–ReLU–conv, bias-free: the official ``B.ResBlock(mode='CRC', bias=False)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.res = nn.Sequential(conv3(channels, channels), nn.ReLU(inplace=True), conv3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res(x)


class UNetRes(nn.Module):
    """The published DRUNet with the official module names (``m_head``, ``m_down1..3``, ``m_body``, ``m_up3..1``,
    ``m_tail``), so the released ``drunet_color.pth`` loads strictly; called as :class:`DRUNet`: ``D(y, σ)``.

    Written from DPIR's ``models/network_unet.py`` (``UNetRes``, lines 67-116) and ``models/basicblock.py``:
    ``B.conv(mode='C')`` is one 3×3 convolution; ``B.sequential`` flattens nested ``nn.Sequential``s, so the
    2×2 strided down-convolution is ``m_downK.{nb}`` and the 2×2 transposed up-convolution ``m_upK.0``;
    ``B.ResBlock`` keeps its convolutions in ``res.0`` and ``res.2``. Unlike :class:`DRUNet` the output is the
    tail's (no global skip). Inputs are padded by replication to multiples of 8 and cropped back.

    Example:
        >>> import torch
        >>> net = UNetRes(nc=(4, 8, 8, 8), nb=1).eval()
        >>> [k for k in net.state_dict()][:4]
        ['m_head.weight', 'm_down1.0.res.0.weight', 'm_down1.0.res.2.weight', 'm_down1.1.weight']
        >>> tuple(net(torch.rand(1, 3, 13, 10), 0.1).shape)
        (1, 3, 13, 10)
    """

    def __init__(self, in_nc: int = 4, out_nc: int = 3, nc: tuple[int, ...] | list[int] = (64, 128, 256, 512),
                 nb: int = 4):
        super().__init__()
        c1, c2, c3, c4 = (int(c) for c in nc)
        self.m_head = nn.Conv2d(in_nc, c1, 3, padding=1, bias=False)

        def down(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(*[OfficialResBlock(a) for _ in range(nb)], nn.Conv2d(a, b, 2, stride=2, bias=False))

        def up(b: int, a: int) -> nn.Sequential:
            return nn.Sequential(nn.ConvTranspose2d(b, a, 2, stride=2, bias=False), *[OfficialResBlock(a) for _ in range(nb)])

        self.m_down1, self.m_down2, self.m_down3 = down(c1, c2), down(c2, c3), down(c3, c4)
        self.m_body = nn.Sequential(*[OfficialResBlock(c4) for _ in range(nb)])
        self.m_up3, self.m_up2, self.m_up1 = up(c4, c3), up(c3, c2), up(c2, c1)
        self.m_tail = nn.Conv2d(c1, out_nc, 3, padding=1, bias=False)

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        n, _, h, w = y.shape
        level = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).reshape(-1, 1, 1, 1).expand(n, 1, h, w)
        x0 = torch.cat([y, level], dim=1)
        ph, pw = -h % 8, -w % 8
        if ph or pw:
            x0 = nn.functional.pad(x0, (0, pw, 0, ph), mode="replicate")
        x1 = self.m_head(x0)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)
        x = self.m_up2(x + x3)
        x = self.m_up1(x + x2)
        return self.m_tail(x + x1)[..., :h, :w]


OFFICIAL_FILE = "drunet_color.pth"  # DPIR's model_zoo / https://github.com/cszn/KAIR/releases/download/v1.0/
OFFICIAL_TEXT = "the official DRUNet (DPIR/KAIR UNetRes: in_nc 4, out_nc 3, nc 64-512, nb 4, bias-free)"
ARCHES = ("auto", "official", "suite")


def parameter_count(state: dict[str, torch.Tensor]) -> int:
    """Number of weights in a state dict (these networks have no buffers).

    >>> parameter_count(UNetRes().state_dict())
    32640960
    """
    return sum(int(v.numel()) for v in state.values())


def _plain_state(payload: dict[str, Any]) -> dict[str, Any]:
    """The state dict of a file without our ``format``: the payload itself, or one nested under ``params`` or
    ``state_dict``; a DataParallel ``module.`` prefix is dropped."""
    state = payload
    if not all(isinstance(v, torch.Tensor) for v in payload.values()):
        nested = [payload[k] for k in ("params", "state_dict") if isinstance(payload.get(k), dict)]
        state = nested[0] if nested else payload
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module."):]: v for k, v in state.items()}
    return state


def _layout_problems(state: dict[str, Any], expected: dict[str, torch.Tensor]) -> list[str]:
    """What differs between ``state`` and ``expected`` (keys, tensor shapes), most telling first; [] when it matches."""

    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in state]
    extra = [str(k) for k in state if k not in expected]
    problems = []
    for key, ref in expected.items():
        value = state.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != tuple(ref.shape):
            problems.append(f"{key} has shape {list(value.shape)}, expected {list(ref.shape)}")
            if key == "m_head.weight" and value.ndim == 4 and value.shape[1] == 2:
                problems[-1] += " (a grayscale drunet_gray.pth? pnp restores RGB: use drunet_color.pth)"
    if missing:
        problems.append(f"missing {len(missing)} key(s): {listed(missing)}")
    if extra:
        problems.append(f"{len(extra)} unexpected key(s): {listed(extra)}")
    return problems


def official_from_state(state: dict[str, Any], path: Path) -> UNetRes:
    """:class:`UNetRes` with ``state`` loaded strictly (eval mode, no gradients); a one-line
    :class:`CheckpointError` naming ``path`` and what differs otherwise."""
    with torch.device("meta"):  # the layout without allocating 32.6 M random weights
        net = UNetRes()
    problems = _layout_problems(state, net.state_dict())
    if problems:
        raise CheckpointError(
            f"DRUNet checkpoint '{path}' does not match {OFFICIAL_TEXT}: {'; '.join(problems[:4])}"
            f"{f' (and {len(problems) - 4} more difference(s))' if len(problems) > 4 else ''}; "
            f"expected the official {OFFICIAL_FILE} (plain state dict) or a file written by `bench train drunet`."
        )
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return net.eval().requires_grad_(False)


def read_denoiser(path: Path, arch: str = "auto") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked info (``arch`` "official" or "suite", config, meta, path, parameters) and state dict of the
    denoiser file at ``path``, uncached: a file written by ``bench train drunet`` (our format) or the official
    release's plain state dict. ``arch`` "official" or "suite" accepts only that one."""
    if arch not in ARCHES:
        raise ValueError(f"arch='{arch}' must be one of {', '.join(ARCHES)}")
    if not path.is_file():
        raise CheckpointError(f"DRUNet checkpoint '{path}' does not exist; {HINT}.")
    try:
        payload = checkpoints.load_checkpoint(path)  # torch.load(weights_only=True)
    except CheckpointError as err:
        raise CheckpointError(f"DRUNet {err} ({HINT})") from None
    if "format" in payload:
        if arch == "official":
            raise CheckpointError(
                f"DRUNet checkpoint '{path}' is a restoration-bench file (format '{payload.get('format')}'), not the "
                f"official {OFFICIAL_FILE} state dict that arch=official loads; use arch=auto or arch=suite."
            )
        info, state = read_model(path, FORMAT, "DRUNet", HINT)
        return {**info, "arch": "suite", "parameters": parameter_count(state)}, state
    if arch == "suite":
        raise CheckpointError(
            f"'{path}' is not a restoration-bench DRUNet checkpoint (format '{FORMAT}'); an official "
            f"{OFFICIAL_FILE} loads with arch=official or arch=auto; {HINT}."
        )
    state = _plain_state(payload)
    official_from_state(state, path)  # checks the layout now: one error line, before any cell runs on it
    info = {"arch": "official", "config": {"in_nc": 4, "out_nc": 3, "nc": list(OFFICIAL_ARCH["channels"]), "nb": 4},
            "meta": {}, "path": str(path), "parameters": parameter_count(state)}
    return info, state


DENOISERS: dict[str, ModelCache[tuple[dict[str, Any], dict[str, torch.Tensor]]]] = {
    arch: ModelCache(lambda path, arch=arch: read_denoiser(path, arch)) for arch in ARCHES
}


def load_denoiser(path: str | os.PathLike, arch: str = "auto", device: torch.device | str = "cpu"
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """The denoiser stored at ``path`` and its info (``arch``, config, meta, path, parameters), eval mode, no gradients.

    ``arch``: "auto" reads either format, "official" only the official release's state dict (loaded strictly into
    :class:`UNetRes`), "suite" only a ``bench train drunet`` file (:class:`DRUNet`). Raises
    :class:`bench.errors.CheckpointError` (one line, naming the file and what is wrong) for a missing, truncated,
    foreign or mismatching file.

    Example:
        >>> import os, tempfile, torch
        >>> path = os.path.join(tempfile.mkdtemp(), "drunet_color.pth")
        >>> torch.save({k: torch.zeros(v.shape) for k, v in UNetRes().state_dict().items()}, path)
        >>> model, info = load_denoiser(path)
        >>> type(model).__name__, info["arch"], info["parameters"]
        ('UNetRes', 'official', 32640960)
    """
    if arch not in DENOISERS:
        raise ValueError(f"arch='{arch}' must be one of {', '.join(ARCHES)}")
    info, state = DENOISERS[arch].get(Path(path))
    if info["arch"] == "official":
        model: nn.Module = official_from_state(state, Path(info["path"]))
    else:
        model = build_model(lambda c: DRUNet(c["channels"], c["blocks"]), info, state, "DRUNet")
    return model.to(device), info


def describe_denoiser(info: dict[str, Any]) -> str:
    """The caption's words for a denoiser file (:func:`load_denoiser`'s info): architecture, size, file name.

    >>> describe_denoiser({"arch": "official", "parameters": 32640960, "path": "/w/drunet_color.pth", "config": {}})
    'DRUNet official architecture (32.6 M parameters), weights drunet_color.pth'
    """
    size = f"{info['parameters'] / 1e6:.1f} M parameters"
    name = Path(info["path"]).name
    if info["arch"] == "official":
        return f"DRUNet official architecture ({size}), weights {name}"
    config = info["config"]
    channels = config.get("channels", [])
    return (f"DRUNet of this suite ({size}: channels {channels[0]}-{channels[-1]}, {config.get('blocks')} blocks "
            f"per scale, output y + tail), weights {name}")
