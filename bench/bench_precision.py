"""bf16 (or fp16) against fp32 on real-size Sapiens2 models with random weights.

    .venv/bin/python bench/bench_precision.py [--size 0.4b] [--tasks pose,seg,normal,pointmap,albedo]
        [--dtype bf16] [--images 2] [--device auto] [--json out.json]

Each task model is built at the released architecture for --size (default: 0.4b on a GPU; 0.1b on
a CPU, where a 0.4b pass takes minutes), given random weights (engine.models.testing.randomize_:
unit-scale activations), and run on the same images in fp32 and in the lower precision through
engine.runtime's torch runner. Printed per task (engine.runtime.precision): relative L2 of the raw
outputs; pose keypoint distance in input pixels after decoding with the flip test (median, p99,
share within 1 and 4 px); normal angle in degrees; pointmap relative point error and scale
error; seg argmax agreement; albedo absolute error. Random weights give flat heatmaps and weak
class margins, so these figures bound what trained weights (sharper outputs) show from above.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.models.sapiens2 import TASKS, arch_config, build_model  # noqa: E402
from engine.models.testing import randomize_, tiny_config  # noqa: E402
from engine.runtime.device import device_name, resolve_device, resolve_dtype  # noqa: E402
from engine.runtime.precision import compare  # noqa: E402
from engine.runtime.torch_backend import TorchRunner  # noqa: E402

INPUT_HW = (1024, 768)


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """Normalized inputs with photo-like spatial correlation (upsampled noise), not white noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 32, 24, generator=g)
    return F.interpolate(coarse, size=INPUT_HW, mode="bicubic", align_corners=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default=None, help="tiny, 0.1b, 0.4b, ... (default 0.4b on a GPU, 0.1b on a CPU)")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--dtype", default="auto", help="the precision to compare with fp32 (auto: bf16 where it runs)")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    low = torch.bfloat16 if args.dtype == "auto" and device.type == "cpu" else resolve_dtype(args.dtype, device)
    size = args.size or ("0.4b" if device.type == "cuda" else "0.1b")
    flip = json.loads((REPO_ROOT / "assets" / "keypoints308.json").read_text())["flip_indices"]
    images = smooth_images(args.images)
    print(f"device: {device_name(device)} ({device}); size {size}; {str(low).replace('torch.', '')} vs fp32; "
          f"{args.images} images of {INPUT_HW[0]}x{INPUT_HW[1]}; random weights")
    figures = {"device": device_name(device), "size": size, "dtype": str(low), "tasks": {}}
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        config = tiny_config(task, INPUT_HW) if size == "tiny" else arch_config(f"sapiens2_{size}", task)
        model = randomize_(build_model(config), seed=0)
        outs = {}
        t0 = time.perf_counter()
        for dtype in (torch.float32, low):
            runner = TorchRunner(model, device=device, dtype=dtype, batch_size=args.images * 2)
            outs[dtype] = runner.pose_flip_test(images, flip) if task == "pose" else runner(images)
            runner.release()
            model = randomize_(build_model(config), seed=0)   # the runner may have cast the last one
        result = compare(task, outs[low], outs[torch.float32], INPUT_HW)
        figures["tasks"][task] = result
        print(f"\n{task} ({time.perf_counter() - t0:.0f} s):")
        for key, value in result.items():
            text = value if not isinstance(value, dict) else \
                ", ".join(f"{k} {v:.4g}" for k, v in value.items())
            print(f"  {key}: {text if isinstance(text, str) else f'{text:.4g}'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
