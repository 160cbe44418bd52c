"""A small binary glTF (.glb) reader on numpy: JSON, accessors as arrays, embedded images.

Blender's bundled Python has numpy but not pygltflib, and the add-on only needs what the engine
writes: one buffer in the BIN chunk, accessors (optionally strided, normalized or sparse),
images stored in buffer views. No bpy here, so it is testable anywhere.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

GLB_MAGIC = 0x46546C67  # b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942

COMPONENT_DTYPES = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


class GlbError(ValueError):
    """The file is not a binary glTF this reader understands; the message names the file."""


class Glb:
    """A parsed .glb: `json` (the glTF document) and `bin` (the BIN chunk's bytes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise GlbError(f"{self.path}: cannot read ({exc.strerror})") from exc
        self.json, self.bin = _split_chunks(data, self.path)
        self._buffer = np.frombuffer(self.bin, dtype=np.uint8) if self.bin else np.zeros(0, np.uint8)

    # --- lookups ---------------------------------------------------------------------------
    def list(self, key: str) -> list:
        return self.json.get(key) or []

    def buffer_view_bytes(self, index: int) -> memoryview:
        view = self._get("bufferViews", index)
        if view.get("buffer", 0) != 0:
            raise GlbError(f"{self.path}: bufferView {index} uses an external buffer (only GLB-embedded data is read)")
        start = view.get("byteOffset", 0)
        end = start + view["byteLength"]
        if end > len(self.bin):
            raise GlbError(f"{self.path}: bufferView {index} runs past the end of the BIN chunk")
        return memoryview(self.bin)[start:end]

    def accessor(self, index: int) -> np.ndarray:
        """The accessor's data as an (count,) or (count, width) array; normalized ints become float32."""
        acc = self._get("accessors", index)
        try:
            dtype = np.dtype(COMPONENT_DTYPES[acc["componentType"]]).newbyteorder("<")
            width = TYPE_WIDTHS[acc["type"]]
        except KeyError as exc:
            raise GlbError(f"{self.path}: accessor {index} has an unknown component type or type") from exc
        count = int(acc["count"])
        if "bufferView" in acc:
            out = self._strided(acc, index, dtype, width, count)
        else:
            out = np.zeros((count, width), dtype=dtype)
        if "sparse" in acc:
            out = np.array(out)  # writable copy
            sparse = acc["sparse"]
            n = int(sparse["count"])
            idx_dtype = np.dtype(COMPONENT_DTYPES[sparse["indices"]["componentType"]]).newbyteorder("<")
            idx = self._dense_view(sparse["indices"], idx_dtype, n, index)
            vals = self._dense_view(sparse["values"], dtype, n * width, index).reshape(n, width)
            out[idx.astype(np.int64)] = vals
        if acc.get("normalized"):
            out = _unnormalize(out)
        return out[:, 0] if width == 1 else out

    def image_bytes(self, index: int) -> tuple[bytes, str]:
        """(encoded bytes, mime type) of an image stored in a buffer view."""
        image = self._get("images", index)
        if "bufferView" not in image:
            raise GlbError(f"{self.path}: image {index} is not embedded (uri images are not read)")
        return bytes(self.buffer_view_bytes(image["bufferView"])), image.get("mimeType", "image/png")

    # --- helpers ---------------------------------------------------------------------------
    def _get(self, key: str, index: int) -> dict:
        items = self.list(key)
        if not 0 <= index < len(items):
            raise GlbError(f"{self.path}: {key}[{index}] does not exist")
        return items[index]

    def _strided(self, acc: dict, index: int, dtype: np.dtype, width: int, count: int) -> np.ndarray:
        view = self._get("bufferViews", acc["bufferView"])
        elem = dtype.itemsize * width
        stride = view.get("byteStride") or elem
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        needed = start + stride * (count - 1) + elem if count else start
        if needed > len(self.bin):
            raise GlbError(f"{self.path}: accessor {index} runs past the end of the BIN chunk")
        if count == 0:
            return np.zeros((0, width), dtype=dtype)
        if stride == elem and start % dtype.itemsize == 0:
            return np.frombuffer(self.bin, dtype=dtype, count=count * width, offset=start).reshape(count, width)
        # Interleaved or unaligned: view the rows as bytes, then reinterpret (still no Python loop).
        rows = np.lib.stride_tricks.as_strided(
            self._buffer[start:], shape=(count, elem), strides=(stride, 1), writeable=False
        )
        return np.ascontiguousarray(rows).view(dtype).reshape(count, width)

    def _dense_view(self, spec: dict, dtype: np.dtype, n: int, index: int) -> np.ndarray:
        view = self._get("bufferViews", spec["bufferView"])
        start = view.get("byteOffset", 0) + spec.get("byteOffset", 0)
        if start + n * dtype.itemsize > len(self.bin):
            raise GlbError(f"{self.path}: sparse data of accessor {index} runs past the end of the BIN chunk")
        return np.frombuffer(self.bin, dtype=dtype, count=n, offset=start)


def _unnormalize(values: np.ndarray) -> np.ndarray:
    kind = values.dtype
    if kind.kind == "f":
        return values
    info = np.iinfo(kind)
    out = values.astype(np.float32) / np.float32(info.max)
    return np.maximum(out, -1.0) if info.min < 0 else out


def _split_chunks(data: bytes, path: Path) -> tuple[dict, bytes]:
    if len(data) < 20:
        raise GlbError(f"{path}: too short to be a binary glTF ({len(data)} bytes)")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC:
        raise GlbError(f"{path}: not a binary glTF (bad magic)")
    if version != 2:
        raise GlbError(f"{path}: glTF container version {version} (only 2 is supported)")
    if length > len(data):
        raise GlbError(f"{path}: truncated ({len(data)} of {length} bytes)")
    document, binary, offset = None, b"", 12
    while offset + 8 <= length:
        chunk_length, chunk_type = struct.unpack_from("<II", data, offset)
        body = data[offset + 8 : offset + 8 + chunk_length]
        if len(body) != chunk_length:
            raise GlbError(f"{path}: chunk at byte {offset} is truncated")
        if chunk_type == CHUNK_JSON and document is None:
            try:
                document = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise GlbError(f"{path}: the JSON chunk is not valid JSON ({exc})") from exc
        elif chunk_type == CHUNK_BIN and not binary:
            binary = body
        offset += 8 + chunk_length
    if document is None:
        raise GlbError(f"{path}: no JSON chunk")
    return document, binary
