"""The batch's account of itself: DIR/batch_report.json (+ a CSV beside it) and live progress.

Progress for people is a tqdm bar on stderr (items finished of those to run, failures, rate, ETA); for
machines `--progress json` prints one JSON object per line on stdout: a `start` event, one `item` event
per finished item, and an `end` event with the summary.
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

from .resume import atomic_write
from .spec import REPORT_CSV, REPORT_JSON

CSV_COLUMNS = ["subject", "status", "seconds", "peak_rss_mib", "error", "bundle", "blend", "glb", "inputs"]
# the JSON report is rewritten at most this often while a batch runs (and always at the end): one big
# batch would otherwise rewrite a large file once per item
REWRITE_EVERY_S = 5.0


class BatchReport:
    def __init__(self, out_dir: Path, items, header: dict):
        self.out_dir = Path(out_dir)
        self.header = header
        self.records = {it.subject: {"subject": it.subject, "status": "pending", "inputs": it.inputs,
                                     "options": it.options} for it in items}
        self.started = time.time()
        self._written = 0.0

    def set(self, subject: str, rec: dict) -> None:
        self.records[subject].update({k: v for k, v in rec.items() if v is not None or k == "error"})

    def counts(self) -> dict:
        out = {s: 0 for s in ("done", "skipped", "failed", "cancelled")}
        for r in self.records.values():
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def summary(self, wall_s: float) -> dict:
        c = self.counts()
        ran = [r for r in self.records.values() if r["status"] in ("done", "failed") and r.get("seconds")]
        peaks = [r["peak_rss_mib"] for r in ran if r.get("peak_rss_mib")]
        return {"total": len(self.records), **c, "wall_s": round(wall_s, 3),
                "items_per_min": round(60 * len(ran) / wall_s, 3) if wall_s > 0 and ran else None,
                "item_seconds_mean": round(sum(r["seconds"] for r in ran) / len(ran), 3) if ran else None,
                "peak_rss_mib_max": max(peaks) if peaks else None}

    def write(self, wall_s: float, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._written < REWRITE_EVERY_S:
            return
        self._written = now
        doc = {"schema": "faceforge.batch_report", "schema_version": 1, **self.header,
               "started": _iso(self.started), "updated": _iso(time.time()), "finished": final,
               "summary": self.summary(wall_s), "items": list(self.records.values())}
        atomic_write(self.out_dir / REPORT_JSON, json.dumps(doc, indent=1))
        buf = io.StringIO()
        w = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in self.records.values():
            w.writerow({**r, "inputs": ";".join(r.get("inputs") or [])})
        atomic_write(self.out_dir / REPORT_CSV, buf.getvalue())


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


class Progress:
    """mode: 'bar' (tqdm on stderr), 'json' (JSON lines on stdout) or 'none'."""

    def __init__(self, mode: str, total: int, to_run: int, info: dict):
        self.mode, self.to_run, self.finished, self.counts = mode, to_run, 0, {"done": 0, "failed": 0}
        self.t0 = time.perf_counter()
        self.bar = None
        if mode == "bar" and total - to_run:
            print(f"batch: {total - to_run} of {total} items are up to date (skipped)", file=sys.stderr)
        if mode == "json":
            self._emit({"event": "start", "total": total, "to_run": to_run, "skipped": total - to_run, **info})
        elif mode == "bar" and to_run:
            from tqdm import tqdm

            self.bar = tqdm(total=to_run, unit="item", desc="batch", file=sys.stderr, dynamic_ncols=True,
                            smoothing=0.1)

    def item(self, rec: dict) -> None:
        self.finished += 1
        self.counts[rec["status"]] = self.counts.get(rec["status"], 0) + 1
        if self.mode == "json":
            elapsed = time.perf_counter() - self.t0
            rate = self.finished / elapsed if elapsed > 0 else 0.0
            self._emit({"event": "item", "subject": rec["subject"], "status": rec["status"],
                        "seconds": rec.get("seconds"), "peak_rss_mib": rec.get("peak_rss_mib"),
                        "error": rec.get("error"), "finished": self.finished, "to_run": self.to_run,
                        **self.counts, "items_per_min": round(60 * rate, 3),
                        "eta_s": round((self.to_run - self.finished) / rate, 1) if rate > 0 else None})
        elif self.bar is not None:
            if rec["status"] == "failed":
                self.bar.write(f"failed: {rec['subject']}: {rec.get('error')}", file=sys.stderr)
            self.bar.set_postfix(done=self.counts["done"], failed=self.counts["failed"], refresh=False)
            self.bar.update(1)

    def close(self, summary: dict, cancelled: bool) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.mode == "json":
            self._emit({"event": "end", "cancelled": cancelled, "summary": summary})

    @staticmethod
    def _emit(doc: dict) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
