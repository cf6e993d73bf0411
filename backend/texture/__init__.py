"""UV texture baking for the fitted ICT head: albedo, SH de-lighting, detail normal map.

Entry point: bake_textures(model, identity, views, size=2048, device="cpu", delight=True, detail=True).
"""
from .atlas import split_tiles
from .bake import bake_textures

__all__ = ["bake_textures", "split_tiles"]
