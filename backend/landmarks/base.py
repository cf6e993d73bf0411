"""What every landmark detector returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

FORMATS = {"mediapipe478": 478, "ibug68": 68}
# outer eye corners, whose distance is the usual normaliser for landmark error and image scale
EYE_CORNERS = {"mediapipe478": (33, 263), "ibug68": (36, 45)}


@dataclass
class Detection:
    points: np.ndarray  # (L, 2) pixel coordinates, pixel centre convention (0,0 = centre of top-left pixel)
    format: str  # a key of FORMATS
    box: tuple  # (x0, y0, x1, y1) of the chosen face, px
    n_faces: int = 1
    blendshapes: dict | None = None  # detector's own ARKit scores, when it has them
    warnings: list = field(default_factory=list)

    def __post_init__(self):
        self.points = np.asarray(self.points, np.float64)
        if self.format not in FORMATS or self.points.shape != (FORMATS[self.format], 2):
            raise ValueError(f"bad detection: {self.format} with points {self.points.shape}")

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    @property
    def interocular(self) -> float:
        """Distance between the outer eye corners, the usual normaliser for landmark error."""
        a, b = EYE_CORNERS[self.format]
        return float(np.linalg.norm(self.points[a] - self.points[b]))


def pick_by_size(faces: list[Detection], face_index: int | None = None, path=None) -> Detection:
    """The largest face, or the face_index-th largest (0 = largest); an index past the last face is an
    error that says how many there are (clamping would fit someone the user did not ask for)."""
    order = sorted(range(len(faces)), key=lambda i: faces[i].area, reverse=True)
    if face_index is None:
        return faces[order[0]]
    if not 0 <= face_index < len(faces):
        n = len(faces)
        found = "only one face was found" if n == 1 else f"{n} faces were found (0 = largest ... {n - 1})"
        raise InputError(f"--face-index {face_index} asked for, but {found}", path)
    return faces[order[face_index]]
