"""weights/checksums.json is what `python -m backend check` and every job verify: a weight file rewritten
without its checksum makes the whole product refuse to start (CI caught that once), so compare them here."""
import hashlib
import json
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def test_every_recorded_checksum_matches_its_file():
    sums = json.loads((WEIGHTS / "checksums.json").read_text())
    assert len(sums) >= 5
    wrong = {rel: digest for rel, digest in sums.items()
             if hashlib.sha256((WEIGHTS / rel).read_bytes()).hexdigest() != digest}
    assert wrong == {}, f"re-record with tools/calibrate_landmarks.record_checksum: {sorted(wrong)}"
