"""Development package: benchmarks, synthetic ground truth and build-time model derivations.

Nothing under backend/ or face_reconstruct_addon/ imports it (tests/test_import_boundary.py): the runtime
ships without it. Commands: `python -m bench` (fitting accuracy, peer, speed), `python -m bench.video`
(tracking), `python -m bench.texture_report` (texture quality)."""
