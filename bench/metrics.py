"""PSNR, SSIM, MS-SSIM and LPIPS with the conventions of the official calibration values.

Conventions (they reproduce ``shared/calibration/official_values.csv``, i.e.
IQA-PyTorch's defaults, within 0.005 for every metric and pair):

* Inputs are 8-bit images (restored outputs are rounded to 8 bits before
  scoring, exactly as stored); no border is cropped.
* PSNR: on RGB, data range 255, mean squared error over all pixels and channels.
* SSIM: on the luma channel Y = 0.299 R + 0.587 G + 0.114 B (0-255 scale, not
  rounded), Gaussian window 11×11 σ=1.5, K1=0.01, K2=0.03, valid filtering, no
  downsampling; ``pytorch_msssim.ssim`` in float64.
* MS-SSIM: the same luma and window, 5 scales with the standard weights,
  ``pytorch_msssim.ms_ssim``. It needs both sides > 160 px; smaller images get
  ``NaN`` (recorded as missing, with one warning) rather than a different
  definition under the same name.
* LPIPS: the ``lpips`` package, AlexNet backbone, linear layers v0.1, inputs
  scaled to [-1, 1]. The backbone comes from ``$BENCH_LPIPS_ALEXNET`` (a
  ``features.*`` state dict, loaded with ``weights_only=True``), else from the
  torch hub cache (downloaded there once, nothing printed on stdout); with
  neither, LPIPS is ``NaN`` with one warning line naming the fix (rows record
  why: ``missing: ...``). The reference image's features are kept between calls
  (cells of one image share them), which halves the cost without changing a value.
* PSNR-Y, for super-resolution cells only (the scale factor ``crop`` given): the SR literature's PSNR on the
  BT.601 luma of MATLAB's ``rgb2ycbcr`` (16-235, not rounded), ``crop`` px cropped at every border (EDSR's
  and BasicSR's evaluation, :func:`psnr_y`); NaN (missing) for every other cell.
* Images over 1024×1024 px (LPIPS: 2048×2048) are scored in row bands (:mod:`bench.metric_bands`).
* All four run with one torch thread each (:func:`intra_op_threads`): fast on
  free cores and still fast when another process keeps a core busy. LPIPS runs
  on a second Python thread while PSNR and the SSIMs run on the caller's, so a
  free second core takes it; SSIM and MS-SSIM share MS-SSIM's first scale
  (:func:`ssim_and_ms_ssim_of_luma`). Neither changes a value.

Each value is stored with the implementation that produced it
(:meth:`MetricSuite.implementations`, the ``metric_impl`` column), e.g.
``"lpips 0.1.4 alex v0.1 features:44534cd66e37 cpu"`` or
``"pytorch_msssim 1.0.0 ssim luma float64"``, so values from different library
versions or LPIPS backbones are never mixed unknowingly.

Example:
    >>> import torch
    >>> x = torch.rand(1, 3, 32, 32)
    >>> psnr(x, x.clamp(0, 0.99)) > 30
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from bench.metric_bands import alexnet_features, in_one_piece, lpips_in_bands, luma_in_bands, mse, ssim_stats
from bench.metric_specs import LPIPS_NO_WEIGHTS, LPIPS_NOT_COMPUTED, METRIC_NAMES, METRIC_SPECS

log = logging.getLogger(__name__)

Tensor = torch.Tensor
METRICS = METRIC_NAMES  # names kept for callers of bench.metrics; the facts live in bench.metric_specs
HIGHER_IS_BETTER = {s.name: s.higher_is_better for s in METRIC_SPECS}
LPIPS_ENV = "BENCH_LPIPS_ALEXNET"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
MS_SSIM_MIN_SIDE = 161
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # pytorch_msssim's (Wang et al. 2003)
_LUMA = (0.299, 0.587, 0.114)


def _check(ref: Tensor, dist: Tensor) -> None:
    if ref.shape != dist.shape:
        raise ValueError(f"reference {tuple(ref.shape)} and distorted {tuple(dist.shape)} differ in shape")


def psnr(ref: Tensor, dist: Tensor) -> float:
    """PSNR in dB of [0, 1] RGB tensors (data range 1, i.e. 255 on 8 bits)."""
    _check(ref, dist)
    error = mse(ref, dist)
    return math.inf if error == 0 else 10.0 * math.log10(1.0 / error)


# MATLAB's rgb2ycbcr luma (ITU-R BT.601, studio swing 16-235) on the 0-255 scale from RGB in [0, 1], as the SR
# literature's evaluation code computes it (EDSR's utility.calc_psnr: the same weights as 65.738/256 etc.)
_BT601_Y = (65.481, 128.553, 24.966)


def psnr_y(ref: Tensor, dist: Tensor, crop: int) -> float:
    """The super-resolution literature's PSNR in dB: on the BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
    (0-255 scale, not rounded, data range 255), ``crop`` px removed at every border (the scale factor), as EDSR's
    benchmark evaluation (``utility.calc_psnr``) and BasicSR's ``calculate_psnr(crop_border=scale,
    test_y_channel=True)``. KAIR/DPIR round the Y of 8-bit images to integers first (about 0.01 dB apart).

    >>> import torch
    >>> x = torch.zeros(1, 3, 12, 12)
    >>> y = x.clone(); y[..., 2:10, 2:10] = 1 / 255  # every channel one level up inside, nothing at the border
    >>> round(psnr_y(x, y, 2), 4) == round(10 * math.log10(255**2 / (219 / 255) ** 2), 4)
    True
    """
    _check(ref, dist)
    if crop < 0 or 2 * crop >= min(ref.shape[-2:]):
        raise ValueError(f"PSNR-Y crop {crop} leaves nothing of a {ref.shape[-2]}×{ref.shape[-1]} image")
    weights = torch.tensor(_BT601_Y, dtype=torch.float64).view(1, 3, 1)
    total, count = 0.0, 0
    height, width = ref.shape[-2], ref.shape[-1]
    for top in range(crop, height - crop, 256):  # row bands: bounded memory for large images
        rows = slice(top, min(top + 256, height - crop))
        diff = (ref[..., rows, crop:width - crop].double().cpu() - dist[..., rows, crop:width - crop].double().cpu())
        y = (diff.flatten(-2) * weights).sum(-2)  # (N, pixels): the luma difference, 0-255 scale
        total += float((y**2).sum())
        count += y.numel()
    error = total / count
    return math.inf if error == 0 else 10.0 * math.log10(255.0**2 / error)


def luma(x: Tensor) -> Tensor:
    """Y = 0.299 R + 0.587 G + 0.114 B on the 0-255 scale, float64, ``(N, 1, H, W)``."""
    return luma_in_bands(x, torch.tensor(_LUMA, dtype=torch.float64, device=x.device).view(1, 3, 1, 1))


def ssim(ref: Tensor, dist: Tensor) -> float:
    """SSIM on luma (see module conventions)."""
    _check(ref, dist)
    return ssim_of_luma(luma(ref), luma(dist))


def ssim_of_luma(ref_y: Tensor, dist_y: Tensor) -> float:
    """SSIM of two luma images from :func:`luma` (what :func:`ssim` computes after converting)."""
    from pytorch_msssim import ssim as _ssim

    if not in_one_piece(ref_y):  # in bands (bench.metric_bands)
        return float(ssim_stats(ref_y, dist_y)[0].mean())
    return float(_ssim(ref_y, dist_y, data_range=255.0, size_average=True))


def ssim_and_ms_ssim_of_luma(ref_y: Tensor, dist_y: Tensor) -> tuple[float, float]:
    """``(SSIM, MS-SSIM)`` of two luma images, bit for bit what :func:`ssim_of_luma` and :func:`ms_ssim_of_luma`
    return, with MS-SSIM's first scale shared: ``pytorch_msssim.ms_ssim`` starts with the very ``_ssim`` call
    that ``pytorch_msssim.ssim`` makes, so doing it once saves a third of the work (tests pin the equality).

    >>> import torch
    >>> y = luma(torch.rand(1, 3, 176, 176))
    >>> ssim_and_ms_ssim_of_luma(y, y)
    (1.0, 1.0)
    """
    import importlib

    library = importlib.import_module("pytorch_msssim.ssim")  # the module (its package exports a function ssim)

    if min(ref_y.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return ssim_of_luma(ref_y, dist_y), ms_ssim_of_luma(ref_y, dist_y)
    window = library._fspecial_gauss_1d(11, 1.5).repeat([ref_y.shape[1], 1, 1, 1])
    weights = ref_y.new_tensor(MS_SSIM_WEIGHTS)
    x, y, contrasts = ref_y, dist_y, []
    for level in range(len(MS_SSIM_WEIGHTS)):
        per_channel, contrast = ssim_stats(x, y, window)  # library._ssim; in bands for a large image
        if level == 0:
            ssim_value = float(per_channel.mean())
        if level < len(MS_SSIM_WEIGHTS) - 1:
            contrasts.append(torch.relu(contrast))
            padding = [side % 2 for side in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=padding)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=padding)
    stacked = torch.stack(contrasts + [torch.relu(per_channel)], dim=0)
    return ssim_value, float(torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean())


def ms_ssim(ref: Tensor, dist: Tensor) -> float:
    """MS-SSIM on luma; ``NaN`` for images with a side under 161 px."""
    _check(ref, dist)
    return ms_ssim_of_luma(luma(ref), luma(dist))


def ms_ssim_of_luma(ref_y: Tensor, dist_y: Tensor) -> float:
    """MS-SSIM of two luma images from :func:`luma`; ``NaN`` (with one warning) when a side is under 161 px."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(ref_y.shape[-2:]) < MS_SSIM_MIN_SIDE:
        height, width = ref_y.shape[-2:]
        _warn_once(
            "ms_ssim-small",
            f"MS-SSIM is missing for images under {MS_SSIM_MIN_SIDE} px per side (5 scales of an 11-px window); "
            f"these are {width}×{height} px (bench run --crop {MS_SSIM_MIN_SIDE} or more gives MS-SSIM).",
        )
        return math.nan
    if not in_one_piece(ref_y):
        return ssim_and_ms_ssim_of_luma(ref_y, dist_y)[1]
    return float(_ms_ssim(ref_y, dist_y, data_range=255.0, size_average=True))


@contextmanager
def intra_op_threads(count: int = 1) -> Iterator[None]:
    """Run torch with ``count`` intra-op threads inside the block, then restore the previous setting.

    Metrics of one image pair are small: extra threads gain little on free cores, and when another process
    keeps a core busy every parallel region waits for a descheduled thread (measured on 2 cores with one
    busy: all four metrics 10× slower with 2 threads than with 1).

    >>> with intra_op_threads(1):
    ...     torch.get_num_threads()
    1
    """
    previous = torch.get_num_threads()
    if previous == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


_why: dict[str, str] = {}  # why the last attempt to load LPIPS's weights failed


def _missing(key: str, why: str) -> None:
    _why["lpips"] = why  # names no command's flags: bench run, rescore and metrics each add their own advice
    _warn_once(key, f"LPIPS is missing: {why}; set {LPIPS_ENV} to a local AlexNet state dict (README: Offline "
                    "weights). LPIPS is recorded as missing.")


def _load_weights(path: Path | str) -> dict[str, Tensor] | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a state dict, pickled code: LPIPS only, never the run
        _missing("lpips-load", f"cannot load {path} ({type(err).__name__})")
        return None


def _alexnet_state() -> dict[str, Tensor] | None:
    path = os.environ.get(LPIPS_ENV)
    if path:
        if not Path(path).is_file():
            _missing("lpips-env", f"{LPIPS_ENV}={path} is not a file")
            return None
        state = _load_weights(path)
    else:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_URL.rsplit("/", 1)[-1]
        if cached.is_file():
            state = _load_weights(cached)
        elif "lpips-download" in _warned:  # failed already in this process (offline): not once more per suite
            return None
        else:
            log.info("LPIPS: downloading the AlexNet backbone from %s to %s", ALEXNET_URL, cached)
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # torch hub prints "Downloading: ..." on stdout
                    state = torch.hub.load_state_dict_from_url(ALEXNET_URL, map_location="cpu", progress=False,
                                                               weights_only=True)
            except Exception as err:  # offline, proxy, corrupt cache: never crash a run over LPIPS
                _missing("lpips-download", f"the AlexNet backbone is not in the torch hub cache and could not be "
                                           f"downloaded ({type(err).__name__})")
                return None
    if state is None:
        return None
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        _missing("lpips-keys", f"{path or cached} has no 'features.*' keys")
        return None
    return features


class LpipsMetric:
    """LPIPS (AlexNet, v0.1) loaded once; ``available`` is False when weights are missing.

    Example:
        >>> m = LpipsMetric()
        >>> import torch; x = torch.rand(1, 3, 64, 64)
        >>> v = m(x, x)
        >>> math.isnan(v) or v < 1e-6
        True
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self._model = None
        self._tried = False
        self.backbone_digest = ""  # sha256 prefix of the AlexNet features actually loaded
        self.missing = ""  # why the weights could not be loaded (once tried)
        self._reference: tuple[Tensor, list[Tensor]] | None = None  # the last reference image and its features

    def _load(self) -> None:
        self._tried = True
        state = _alexnet_state()
        if state is None:
            self.missing = _why.get("lpips", "its weights could not be loaded")
            return
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(key.encode() + state[key].detach().cpu().contiguous().numpy().tobytes())
        self.backbone_digest = digest.hexdigest()[:12]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import lpips

            model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        mapped = {}
        for key, value in state.items():
            _, index, param = key.split(".")
            for s in range(1, 6):
                if index in getattr(model.net, f"slice{s}")._modules:
                    mapped[f"slice{s}.{index}.{param}"] = value
        model.net.load_state_dict(mapped, strict=True)
        self._model = model.eval().to(self.device)

    @property
    def available(self) -> bool:
        if not self._tried:
            self._load()
        return self._model is not None

    @property
    def implementation(self) -> str:
        """What produces the values, e.g. ``"lpips 0.1.4 alex v0.1 features:44534cd66e37 cpu"``."""
        return f"lpips {_package_version('lpips')} alex v0.1 features:{self.backbone_digest} {self.device.type}"

    def __call__(self, ref: Tensor, dist: Tensor) -> float:
        """LPIPS of ``dist`` against ``ref``: ``lpips.LPIPS.forward(dist, ref)`` step by step (the same operations,
        so the same value), with the reference's features kept for the next pair: cells of one image share it."""
        _check(ref, dist)
        if not self.available:
            return math.nan
        import lpips

        model = self._model
        if not in_one_piece(ref, lpips=True):  # a large image: in bands, its features are not kept (bench.metric_bands)
            return lpips_in_bands(model, ref, dist, self.device)
        with torch.no_grad():
            if self._reference is None or not _same(self._reference[0], ref):
                self._reference = (ref.detach().clone(), alexnet_features(model, ref, self.device))
            ref_features, dist_features = self._reference[1], alexnet_features(model, dist, self.device)
            value = 0
            for layer in range(model.L):
                diff = (dist_features[layer] - ref_features[layer]) ** 2
                value += lpips.spatial_average(model.lins[layer](diff), keepdim=True)
        return float(value.item())


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and bool(torch.equal(a, b))


@cache
def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class MetricSuite:
    """All four metrics of one image pair; LPIPS is loaded lazily once.

    Example:
        >>> import torch
        >>> x = torch.rand(1, 3, 32, 32)
        >>> suite = MetricSuite(lpips=False)
        >>> scores = suite(x, x)
        >>> sorted(scores), suite.implementations(scores)["lpips"]  # no LPIPS value: why, not an implementation
        (['lpips', 'ms_ssim', 'psnr', 'psnr_y', 'ssim'], 'missing: not computed (--no-lpips)')
    """

    def __init__(self, lpips: bool = True, device: str | torch.device = "cpu"):
        self.lpips = LpipsMetric(device) if lpips else None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def __call__(self, ref: Tensor, dist: Tensor, crop: int | None = None) -> dict[str, float]:
        return self.score(ref, dist, crop=crop)

    def score(self, ref: Tensor, dist: Tensor, names: Iterable[str] = METRIC_NAMES,
              crop: int | None = None) -> dict[str, float]:
        """The metrics ``names`` of one pair (NaN: missing or not applicable). ``crop`` is PSNR-Y's border, the
        scale factor of a super-resolution cell (:func:`bench.compute.metric_crop`); without it PSNR-Y is NaN.

        LPIPS runs on a second thread while PSNR and the SSIMs run on this one: each is single-threaded torch
        (no parallel region that waits for a descheduled thread under load), so a free second core halves the
        wall time and a busy one costs nothing. The values do not depend on it.
        """
        _check(ref, dist)
        names = list(names)
        scores: dict[str, float] = {}
        with intra_op_threads(1):
            lpips_value = None
            if "lpips" in names and self.lpips is not None and self.lpips.available:
                lpips_value = self._beside().submit(self.lpips, ref, dist)
            if "psnr" in names:
                scores["psnr"] = psnr(ref, dist)
            if "ssim" in names or "ms_ssim" in names:
                ref_y, dist_y = luma(ref), luma(dist)
                if "ssim" in names and "ms_ssim" in names:
                    scores["ssim"], scores["ms_ssim"] = ssim_and_ms_ssim_of_luma(ref_y, dist_y)
                elif "ssim" in names:
                    scores["ssim"] = ssim_of_luma(ref_y, dist_y)
                else:
                    scores["ms_ssim"] = ms_ssim_of_luma(ref_y, dist_y)
            if "psnr_y" in names:
                scores["psnr_y"] = psnr_y(ref, dist, crop) if crop is not None else math.nan
            if "lpips" in names:
                scores["lpips"] = lpips_value.result() if lpips_value is not None else math.nan
        return {name: scores[name] for name in names}

    def _beside(self) -> ThreadPoolExecutor:
        """The one thread LPIPS runs on: kept between calls (a fresh thread cost 2-8 ms of per-thread set-up per
        pair), made again in a forked child, where the parent's thread does not exist."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool, self._pool_pid = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpips"), os.getpid()
        return self._pool

    def implementations(self, scores: dict[str, float], crop: int | None = None) -> dict[str, str]:
        """``{metric: implementation}`` for the values of ``scores`` that are not missing, and why LPIPS is missing
        where it is (:data:`LPIPS_NOT_COMPUTED`, :data:`LPIPS_NO_WEIGHTS`; reports say it, rescoring replaces it)."""
        msssim = f"pytorch_msssim {_package_version('pytorch_msssim')}"
        known = {"psnr": "bench psnr rgb float64", "ssim": f"{msssim} ssim luma float64",
                 "ms_ssim": f"{msssim} ms_ssim luma float64", "psnr_y": f"bench psnr_y bt601 crop {crop} float64"}
        if self.lpips is not None:
            known["lpips"] = self.lpips.implementation
        out = {name: known[name] for name, value in scores.items()
               if name in known and value is not None and not (isinstance(value, float) and math.isnan(value))}
        if "lpips" in scores and "lpips" not in out and (self.lpips is None or not self.lpips.available):
            out["lpips"] = LPIPS_NOT_COMPUTED if self.lpips is None else LPIPS_NO_WEIGHTS
        return out

