"""Fitting the ICT model to 2D landmarks: where landmarks live on the model (spec), rotations, the Schur-complement
LM solver, starting values (init), the bundle adjuster that composes them, the identity check and video tracking."""
from .adjuster import BundleAdjuster, FitConfig, FitResult
from .rotations import head_angles, relative_yaw_deg
from .spec import LandmarkSpec, landmark_spec

__all__ = ["BundleAdjuster", "FitConfig", "FitResult", "LandmarkSpec", "landmark_spec", "head_angles",
           "relative_yaw_deg"]
