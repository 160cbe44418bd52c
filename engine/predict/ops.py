"""The pre- and post-processing operations of a predict run, chosen once per run.

CpuOps: the numpy recipe (engine.recipe) on the CPU, exact. GpuOps: engine.runtime.gpu_ops on a
CUDA device (within the tolerances docs/performance.md states), photos uploaded once per batch,
outputs kept on the device until mapped back. TaskRun calls the same methods on either.
"""

from __future__ import annotations

import numpy as np

from engine import recipe


class CpuOps:
    keep_on_device = False

    def sync(self) -> None:
        """Nothing runs asynchronously on the CPU."""

    def batch(self, images):
        """Prepared uint8 H x W x 3 inputs -> the normalized B x 3 x H x W batch a runner takes."""
        return recipe.normalize(np.stack(images))

    def seg_inputs(self, works) -> list:
        return [recipe.seg_input(w.photo.rgb) for w in works]

    def seg_labels(self, logits, hw, with_probs: bool):
        return recipe.seg_labels(logits.numpy(), hw, with_probs=with_probs)

    def pose_inputs(self, owners) -> list:
        return [recipe.warp_affine(w.photo.rgb, c.matrix, recipe.INPUT_WH, c.interpolation) for w, c in owners]

    def decode_heatmaps(self, heatmaps):
        from engine.codecs.udp_heatmap import decode_heatmaps

        return decode_heatmaps(heatmaps, recipe.INPUT_WH)

    def dense_inputs(self, works) -> list:
        return [recipe.dense_input(w.photo.rgb) for w in works]

    def dense_output(self, task: str, raw, box) -> np.ndarray:
        if task == "pointmap":
            return recipe.pointmap_output(raw[0], raw[1], box)
        return getattr(recipe, f"{task}_output")(raw, box)

    def release(self, work) -> None:
        """Nothing is held on a device."""


class GpuOps:
    keep_on_device = True

    def __init__(self, device):
        from engine.runtime import gpu_ops

        self.device, self.gpu = device, gpu_ops

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _photo(self, work):
        """The photo as a 3 x H x W uint8 tensor on the device (uploaded once per batch)."""
        if work.on_device is None:
            work.on_device = self.gpu.images_to_tensor([work.photo.rgb], self.device, pin=True)[0]
        return work.on_device

    def batch(self, images):
        import torch

        return self.gpu.normalize(torch.stack(images))

    def seg_inputs(self, works) -> list:
        return [self.gpu.seg_input(self._photo(w)[None])[0] for w in works]

    def seg_labels(self, logits, hw, with_probs: bool):
        labels, probs = self.gpu.seg_labels(logits.to(self.device), hw, with_probs=with_probs)
        return labels.cpu().numpy(), (probs.cpu().numpy() if probs is not None else None)

    def pose_inputs(self, owners) -> list:
        return list(self.gpu.pose_inputs([self._photo(w) for w, _ in owners], [c for _, c in owners]))

    def decode_heatmaps(self, heatmaps):
        keypoints, scores = self.gpu.decode_heatmaps(heatmaps.to(self.device), recipe.INPUT_WH)
        return keypoints.cpu().numpy(), scores.cpu().numpy()

    def dense_inputs(self, works) -> list:
        return [(image[0], box) for image, box in (self.gpu.dense_input(self._photo(w)[None]) for w in works)]

    def dense_output(self, task: str, raw, box) -> np.ndarray:
        if task == "pointmap":
            out = self.gpu.pointmap_output(raw[0].to(self.device), raw[1].to(self.device), box)
        else:
            out = getattr(self.gpu, f"{task}_output")(raw.to(self.device), box)
        return out.permute(1, 2, 0).cpu().numpy().astype(np.float32)

    def release(self, work) -> None:
        work.on_device = None


def choose_ops(processing):
    """CpuOps for None (the exact recipe), GpuOps for a torch device."""
    return CpuOps() if processing is None else GpuOps(processing)
