"""Per-task input preparation and output handling, exactly as the released checkpoints expect.

Follows ../shared/reference/inference_recipe.md (facts read off the reference implementation).
The photo's resizes and warps are OpenCV's own (the reference's library), so the model inputs are
bit-identical to the reference's; the model outputs are resampled with torch as the reference does.

- seg: stretch the whole photo to 768 x 1024 (area when the width shrinks, else cubic); logits
  back to the photo bilinearly, argmax (softmax for probabilities).
- normal / albedo / pointmap: keep-aspect bilinear resize to fit 768 x 1024 (new side =
  int(side x scale)), centred black padding (odd remainder right/bottom); outputs cropped back,
  resized to the photo. Normals are renormalised before and after; albedo clamped to [0, 1];
  pointmaps divided by the predicted scale and, when upsampled, smoothed first (3 x 3 Gaussian,
  sigma 0.8, 4 passes, reflect border).
- pose: box x1.25, widened or heightened to 3:4, UDP affine warp to 768 x 1024 (bilinear when
  shrinking, which is what cv2.warpAffine does for INTER_AREA, else cubic; black outside), flip test
  averaged with `flip_indices`, keypoints mapped back through the box.

Arrays are numpy H x W x C (photos) or torch B x C x H x W (model tensors). Coordinates here are
the reference's (pixel centres on integers) until `keypoints_to_photo`, which maps to photo pixels
with centres at +0.5 (docs/conventions.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import resample

INPUT_HW = (1024, 768)                 # model input, H x W
INPUT_WH = (INPUT_HW[1], INPUT_HW[0])
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
POSE_BOX_PADDING = 1.25
POINTMAP_BLUR = dict(kernel=3, sigma=0.8, passes=4)
NORMAL_EPS = 1e-8


def normalize(batch_hwc: np.ndarray):
    """uint8 (or float 0..255) B x H x W x 3 RGB -> normalized float32 torch B x 3 x H x W."""
    import torch

    x = (np.asarray(batch_hwc, dtype=np.float32) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


# --------------------------------------------------------------------------- seg: stretch


def seg_input(image: np.ndarray) -> np.ndarray:
    """Stretch the whole photo to the model input: cv2 INTER_AREA when the width shrinks, else cubic."""
    import cv2

    w = image.shape[1]
    flag = cv2.INTER_AREA if INPUT_WH[0] < w else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(image), INPUT_WH, interpolation=flag)


def seg_labels(logits_chw: np.ndarray, size_hw: tuple[int, int], *, with_probs: bool = False,
               rows_per_strip: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
    """C x 1024 x 768 logits -> H x W uint8 class ids (and H x W x C float16 softmax).

    Bilinear (align_corners=False) to the photo, in row strips so a big photo's full-resolution
    logits never sit in memory at once.
    """
    import torch

    h, w = size_hw
    logits = torch.as_tensor(logits_chw, dtype=torch.float32)
    labels = np.empty((h, w), dtype=np.uint8)
    probs = np.empty((h, w, logits.shape[0]), dtype=np.float16) if with_probs else None
    for start in range(0, h, rows_per_strip):
        stop = min(h, start + rows_per_strip)
        strip = resample.linear_rows(logits, size_hw, start, stop)       # C x rows x W
        labels[start:stop] = strip.argmax(dim=0).numpy()
        if probs is not None:
            probs[start:stop] = strip.softmax(dim=0).permute(1, 2, 0).numpy()
    return labels, probs


# --------------------------------------------------------------------------- dense: resize + pad


@dataclass(frozen=True)
class Letterbox:
    """How a photo sits in the model input: resized by `scale` to `resized_hw`, then padded."""

    photo_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    scale: float

    @classmethod
    def fit(cls, photo_hw: tuple[int, int], input_hw: tuple[int, int] = INPUT_HW) -> "Letterbox":
        h, w = photo_hw
        scale = min(input_hw[0] / h, input_hw[1] / w)
        new_h, new_w = int(h * scale), int(w * scale)
        pad_h, pad_w = input_hw[0] - new_h, input_hw[1] - new_w
        return cls(photo_hw=(h, w), resized_hw=(new_h, new_w), pad_top=pad_h // 2,
                   pad_bottom=pad_h - pad_h // 2, pad_left=pad_w // 2, pad_right=pad_w - pad_w // 2,
                   scale=scale)

    @property
    def input_hw(self) -> tuple[int, int]:
        return (self.resized_hw[0] + self.pad_top + self.pad_bottom,
                self.resized_hw[1] + self.pad_left + self.pad_right)

    def pad(self, resized: np.ndarray) -> np.ndarray:
        """Resized photo H' x W' x C -> model input with black (0) borders."""
        widths = [(self.pad_top, self.pad_bottom), (self.pad_left, self.pad_right)]
        widths += [(0, 0)] * (resized.ndim - 2)
        return np.pad(resized, widths, mode="constant", constant_values=0)

    def crop(self, maps):
        """Model-input-sized ... x H x W maps -> the part that shows the photo (numpy or torch)."""
        h, w = self.input_hw
        return maps[..., self.pad_top:h - self.pad_bottom, self.pad_left:w - self.pad_right]

    def as_dict(self) -> dict:
        return {"scale": self.scale, "resized_hw": list(self.resized_hw),
                "padding_tlbr": [self.pad_top, self.pad_left, self.pad_bottom, self.pad_right]}


def dense_input(image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
    import cv2

    box = Letterbox.fit(image.shape[:2])
    resized = cv2.resize(np.ascontiguousarray(image), box.resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
    return box.pad(resized), box


def gaussian_smooth(maps, kernel: int = 3, sigma: float = 0.8, passes: int = 4):
    """Repeated separable Gaussian blur with reflected borders (torchvision's gaussian_blur)."""
    import torch
    import torch.nn.functional as F

    half = (kernel - 1) / 2
    x = torch.linspace(-half, half, kernel, dtype=torch.float64)
    k1 = torch.exp(-0.5 * (x / sigma) ** 2)
    k1 = (k1 / k1.sum()).to(maps.dtype)
    c = maps.shape[1]
    k2 = (k1[:, None] * k1[None, :]).expand(c, 1, kernel, kernel).contiguous()
    r = kernel // 2
    for _ in range(passes):
        maps = F.conv2d(F.pad(maps, (r, r, r, r), mode="reflect"), k2, groups=c)
    return maps


def to_photo(maps_chw, box: Letterbox, *, smooth_when_upsampling: bool = False) -> np.ndarray:
    """Model-input C x H x W map (torch) -> photo-sized H x W x C float32: crop, (smooth), resize."""
    cropped = box.crop(maps_chw)
    ch, cw = cropped.shape[-2:]
    h, w = box.photo_hw
    if smooth_when_upsampling and (h > ch or w > cw):
        cropped = gaussian_smooth(cropped[None].float(), **POINTMAP_BLUR)[0]
    return resample.linear_rows(cropped.float(), (h, w)).permute(1, 2, 0).numpy()


def unit_vectors(v: np.ndarray, eps: float = NORMAL_EPS) -> np.ndarray:
    """Divide by the length (clamped to eps), along the last axis."""
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(length, eps)).astype(np.float32)


def normal_output(raw_chw, box: Letterbox) -> np.ndarray:
    import torch

    n = raw_chw.float()
    n = n / torch.linalg.vector_norm(n, dim=0, keepdim=True).clamp_min(NORMAL_EPS)
    return unit_vectors(to_photo(n, box))


def albedo_output(raw_chw, box: Letterbox) -> np.ndarray:
    a = to_photo(raw_chw.float().clamp(0, 1), box)
    return np.clip(a, 0, 1).astype(np.float32)   # bilinear keeps [0, 1]; float rounding may not


def pointmap_output(points_chw, scale, box: Letterbox) -> np.ndarray:
    """Model points / scale -> metres, cropped, smoothed when upsampling, resized to the photo."""
    metric = points_chw.float() / scale.float().reshape(1, 1, 1)
    return to_photo(metric, box, smooth_when_upsampling=True).astype(np.float32)


# --------------------------------------------------------------------------- pose: box + UDP warp


@dataclass(frozen=True)
class PoseCrop:
    center: np.ndarray      # (2,) box centre, reference pixel coordinates (integer-centred)
    scale: np.ndarray       # (2,) box width, height after padding and the 3:4 fix
    matrix: np.ndarray      # 2 x 3 UDP warp: photo -> model input
    interpolation: str      # "linear" (shrinking) or "cubic"

    def as_dict(self) -> dict:
        return {"center": self.center.tolist(), "scale": self.scale.tolist(),
                "warp": self.matrix.tolist(), "interpolation": self.interpolation}


def box_center_scale(bbox_xyxy, padding: float = POSE_BOX_PADDING,
                     aspect_wh: float = INPUT_WH[0] / INPUT_WH[1]) -> tuple[np.ndarray, np.ndarray]:
    """x1, y1, x2, y2 -> centre and (w, h) enlarged by `padding`, then grown to the input aspect."""
    x1, y1, x2, y2 = (float(v) for v in bbox_xyxy)
    center = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    scale = np.array([w, w / aspect_wh]) if w > h * aspect_wh else np.array([h * aspect_wh, h])
    return center, scale


def udp_warp_matrix(center, scale, output_wh=INPUT_WH) -> np.ndarray:
    """Unbiased warp (no rotation): box left/top edge -> 0, right/bottom edge -> output - 1."""
    sx = (output_wh[0] - 1) / scale[0]
    sy = (output_wh[1] - 1) / scale[1]
    return np.array([[sx, 0.0, sx * (0.5 * scale[0] - center[0])],
                     [0.0, sy, sy * (0.5 * scale[1] - center[1])]])


def pose_crop(bbox_xyxy) -> PoseCrop:
    center, scale = box_center_scale(bbox_xyxy)
    m = udp_warp_matrix(center, scale)
    shrink = min(np.linalg.norm(m[0, :2]), np.linalg.norm(m[1, :2])) < 1.0
    return PoseCrop(center=center, scale=scale, matrix=m, interpolation="linear" if shrink else "cubic")


def warp_affine(image: np.ndarray, matrix: np.ndarray, output_wh=INPUT_WH,
                interpolation: str = "linear") -> np.ndarray:
    """cv2.warpAffine: dst(x, y) = src(M^-1 (x, y)), integer-centred, black outside.

    The reference asks for INTER_AREA when shrinking, which cv2.warpAffine runs as INTER_LINEAR
    (hence "linear" here); "cubic" is INTER_CUBIC.
    """
    import cv2

    flag = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[interpolation]
    return cv2.warpAffine(np.ascontiguousarray(image), np.asarray(matrix, dtype=np.float64),
                          tuple(int(v) for v in output_wh), flags=flag,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def flip_test_average(heatmaps, heatmaps_of_flipped, flip_indices):
    """Average heatmaps with those of the mirrored crop, mirrored back, left/right channels swapped."""
    return (heatmaps + heatmaps_of_flipped.flip(-1)[:, list(flip_indices)]) / 2.0


def keypoints_to_photo(keypoints_input: np.ndarray, crop: PoseCrop, input_wh=INPUT_WH) -> np.ndarray:
    """Model-input keypoints (K x 2) -> photo pixels with centres at +0.5.

    The reference maps back with kp / input_size * scale + centre - scale / 2 (it divides by the
    input size, not size - 1 as the UDP warp would), then we add 0.5 for our pixel convention.
    """
    kp = np.asarray(keypoints_input, dtype=np.float64)
    return kp / np.asarray(input_wh) * crop.scale + crop.center - 0.5 * crop.scale + 0.5
