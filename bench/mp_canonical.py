"""MediaPipe's canonical face mesh (468 vertices, cm), read from the Face Landmarker bundle itself.

The bundle carries `geometry_pipeline_metadata_landmarks.binarypb` (a GeometryPipelineMetadata
protobuf). We decode the few fields we need with a tiny wire-format reader instead of depending on
mediapipe's generated protobuf classes, which the Tasks wheel does not ship.
"""
from __future__ import annotations

import zipfile

import numpy as np

from backend import paths


def _varint(b: bytes, i: int):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b: bytes):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, v


def _packed_varints(b: bytes) -> list[int]:
    out, i = [], 0
    while i < len(b):
        v, i = _varint(b, i)
        out.append(v)
    return out


def load_canonical_mesh(task_path=None):
    """Returns (vertices (468,3) cm, +Y up, +Z towards the viewer; uv (468,2); triangles (T,3))."""
    blob = zipfile.ZipFile(task_path or paths.MEDIAPIPE_TASK).read("geometry_pipeline_metadata_landmarks.binarypb")
    mesh = next(v for num, wire, v in _fields(blob) if num == 1 and wire == 2)  # canonical_mesh
    vbuf, ibuf = [], []
    for num, wire, v in _fields(mesh):
        if num == 3:  # vertex_buffer: packed floats, or one float per entry
            vbuf.extend(np.frombuffer(v, "<f4") if wire == 2 else [np.frombuffer(v, "<f4")[0]])
        elif num == 4:
            ibuf.extend(_packed_varints(v) if wire == 2 else [v])
    vb = np.asarray(vbuf, np.float64).reshape(-1, 5)  # x y z u v
    return vb[:, :3], vb[:, 3:], np.asarray(ibuf, np.int64).reshape(-1, 3)
