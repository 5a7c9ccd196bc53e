"""DIP's precision=auto justification: bfloat16 against float32 on tuning-split crops (noise σ 25, the quick
profile's 300 iterations, 128² centre crops, one thread). Writes docs/tuning/dip-precision.json.

    OMP_NUM_THREADS=1 python benchmarks/eval_dip_precision.py bsd200/100075.png bsd200/153077.png
"""

import json
import sys
import time

import bench
from bench.training.data import load_tuning_images

names = sys.argv[1:]
out = []
for name, image in load_tuning_images(names):
    for precision in ("float32", "bfloat16"):
        t = time.process_time()
        r = bench.restore("dip", image, "noise", seed=0, profile="quick", crop=128, precision=precision, lpips=False)
        out.append({"image": name, "precision": precision, "psnr": round(r.metrics["psnr"], 3),
                    "cpu_s": round(time.process_time() - t, 1)})
        print(out[-1], flush=True)
with open("docs/tuning/dip-precision.json", "w") as handle:
    json.dump(out, handle, indent=1)
