"""DeFlow demonstration: learn a hidden degradation from unpaired images, compare residual statistics.

Builds two unpaired folders in a temporary directory from ../shared/data/train
(bsd200 + yang91, disjoint images: half kept clean, half passed through a
hidden degradation: signal-dependent Gaussian noise std = sqrt(a·x + b), then
Pillow JPEG), trains DeFlow for --max-minutes, translates held-out clean
crops (images in neither folder) and prints the residual std and the
radial log-spectrum distances; writes a figure to --out.

    OMP_NUM_THREADS=1 python benchmarks/deflow_demo.py --max-minutes 10 --out results/deflow_demo
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.api import quantize
from bench.nets.deflow import load_deflow
from bench.training.deflow import TrainOptions, train_deflow
from bench.training.deflow_demo import hidden_degradation, load_png, radial_power, random_crop, save_png

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def build_folders(root: Path, args: argparse.Namespace) -> torch.Tensor:
    """Clean / hidden-degraded folders from disjoint images; returns held-out clean crops (neither folder)."""
    files = sorted((SHARED / "bsd200").glob("*.png")) + sorted((SHARED / "yang91").glob("*"))
    files = [f for f in files if f.suffix.lower() in (".png", ".bmp", ".jpg")]
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(files), generator=g).tolist()
    files = [files[i] for i in order]
    held = files[: args.held_out]
    rest = files[args.held_out :]
    (root / "clean").mkdir()
    (root / "degraded").mkdir()
    for i, path in enumerate(rest):
        image = load_png(path)
        if i % 2 == 0:
            save_png(image, root / "clean" / f"{i:04d}.png")
        else:
            save_png(hidden_degradation(image, g, args.a, args.b, args.quality), root / "degraded" / f"{i:04d}.png")
    crops = [random_crop(load_png(p), args.crop, g) for p in held if min(load_png(p).shape[-2:]) >= args.crop]
    return torch.cat(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-minutes", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("results/deflow_demo"))
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--a", type=float, default=0.01, help="signal-dependent noise: std² = a·x + b")
    parser.add_argument("--b", type=float, default=0.0004)
    parser.add_argument("--quality", type=int, default=60, help="JPEG quality of the hidden degradation")
    parser.add_argument("--held-out", type=int, default=20, help="images held out for evaluation")
    parser.add_argument("--crop", type=int, default=96, help="evaluation crop size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clean = build_folders(root, args)
        start = time.perf_counter()
        record = train_deflow(TrainOptions(
            clean=(str(root / "clean"),), degraded=(str(root / "degraded"),), out=str(args.out / "deflow.pt"),
            config=args.config, steps=10**9, patch=args.patch, lr=args.lr, seed=args.seed,
            max_minutes=args.max_minutes, save_every=500, progress=False))
        print(f"trained {record['step']} steps in {time.perf_counter() - start:.0f} s: {json.dumps(record)}")
    net, _ = load_deflow(args.out / "deflow.pt")
    hidden = hidden_degradation(clean, torch.Generator().manual_seed(1), args.a, args.b, args.quality)
    g = torch.Generator().manual_seed(2)
    learned = torch.cat([quantize(net.translate(x[None], 1.0, g)) for x in clean])
    r_hidden, r_learned = hidden - clean, learned - clean
    r_white = torch.randn(clean.shape, generator=torch.Generator().manual_seed(3)) * r_hidden.std()
    p_hidden, p_learned, p_white = (radial_power(r, bins=24) for r in (r_hidden, r_learned, r_white))

    def distance(p: torch.Tensor) -> float:
        return float((p.log() - p_hidden.log()).abs().mean())

    results = {
        "held_out_crops": len(clean),
        "hidden_residual_std_255": round(float(r_hidden.std()) * 255, 3),
        "learned_residual_std_255": round(float(r_learned.std()) * 255, 3),
        "std_ratio": round(float(r_learned.std() / r_hidden.std()), 3),
        "log_spectrum_L1_learned_vs_hidden": round(distance(p_learned), 4),
        "log_spectrum_L1_white_vs_hidden": round(distance(p_white), 4),
        "training": record,
    }
    print(json.dumps(results, indent=2))
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    write_figure(args.out / "deflow_demo.png", p_hidden, p_learned, p_white, clean[0], hidden[0], learned[0])
    print(f"figure: {args.out / 'deflow_demo.png'}")


def write_figure(path: Path, p_hidden, p_learned, p_white, clean, hidden, learned) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    freq = np.linspace(0, 1, len(p_hidden))
    for power, label in ((p_hidden, "hidden degradation"), (p_learned, "DeFlow (learned)"), (p_white, "white Gaussian")):
        axes[0].semilogy(freq, power.numpy(), label=label)
    axes[0].set(title="radial power spectrum of residual", xlabel="radial frequency (relative)")
    axes[0].legend()
    for ax, image, title in zip(axes[1:], (clean, hidden, learned), ("clean", "hidden-degraded", "DeFlow-translated")):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
