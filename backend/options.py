"""Types and ranges of reconstruct()'s options, checked before any work (CLI, Python API and server alike).

A `texture_size` of -5 used to fail only after detection and fitting; a string `face_index` failed as an
internal error. Each rule here names the option the way its caller spells it (`--texture-size` on the
command line, `options.texture_size` in a server request).
"""
from __future__ import annotations

import math
import os

from .errors import InputError

TEXTURE_SIZES = (64, 8192)  # bake_textures needs 64; the add-on offers up to 4096


def _whole(lo: int, hi: int | None = None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be a whole number (got {v!r})"
        if v < lo or (hi is not None and v > hi):
            return f"must be from {lo} to {hi} (got {v})" if hi is not None else f"must be at least {lo} (got {v})"
        return None
    return check


def _one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)} (got {v!r})"


def _text(v):
    return None if isinstance(v, str) and v.strip() else f"must be a non-empty string (got {v!r})"


def _path(v):
    return None if isinstance(v, os.PathLike) else _text(v)


def _flag(v):
    return None if isinstance(v, bool) else f"must be true or false (got {v!r})"


def _smoothing(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        return f"must be a number of at least 0 (got {v!r})"
    return None


RULES = {
    "landmarks": _one_of("mediapipe", "fan"),
    "landmarks_file": _path,
    "device": _one_of("auto", "cpu", "cuda"),
    "texture_size": _whole(*TEXTURE_SIZES),
    "texture": _flag,
    "texture_hair": _one_of("remove", "keep"),
    "subject": lambda v: None if isinstance(v, str) else f"must be a string (got {v!r})",
    "face_index": _whole(0),
    "frame_step": _whole(1),
    "max_frames": _whole(1),
    "smoothing": _smoothing,
}
# None means "the default" for these; the others always have a value
OPTIONAL = {"landmarks_file", "subject", "face_index", "frame_step", "max_frames", "smoothing"}


def cli_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_options(options: dict, name=cli_name) -> None:
    """InputError for the first option (of RULES; others are not looked at) of the wrong type or range."""
    for key, rule in RULES.items():
        if key not in options or (options[key] is None and key in OPTIONAL):
            continue
        why = rule(options[key])
        if why is not None and key == "texture_size" and name is cli_name:
            why += " (use --no-texture for none)"
        if why is not None:
            raise InputError(f"{name(key)} {why}")
