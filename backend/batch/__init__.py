"""Batch at scale: many subjects or clips -> one result bundle each, resumable, on a local process pool
or on a Ray cluster (`python -m backend batch SPEC --output DIR`, README "Batch").

spec.py (SPEC -> items), resume.py (fingerprints and the per-item record), worker.py (one item in a
worker), local.py / ray_pool.py (where workers run), report.py (batch_report.json/.csv, progress),
runner.py (plan, dispatch, Ctrl-C), cli.py (arguments).
"""
from .runner import run_batch
from .spec import Item, load_spec

__all__ = ["run_batch", "load_spec", "Item"]
