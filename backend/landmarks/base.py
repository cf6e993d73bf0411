"""What every landmark detector returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FORMATS = {"mediapipe478": 478, "ibug68": 68}


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
    def interocular(self) -> float:
        """Distance between the outer eye corners, the usual normaliser for landmark error."""
        a, b = (33, 263) if self.format == "mediapipe478" else (36, 45)
        return float(np.linalg.norm(self.points[a] - self.points[b]))
