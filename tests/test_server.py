"""The JSON-lines server (`python -m backend serve`) as the add-on sees it: a real subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "tests" / "data" / "multiview-mvfnet"


class Server:
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, "-m", "backend", "serve"], cwd=REPO, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def send(self, obj):
        self.p.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        self.p.stdin.flush()

    def read(self, until, timeout=120.0):
        """Every stdout line must be a JSON object; returns events up to the first matching `until`."""
        out, t0 = [], time.monotonic()
        while time.monotonic() - t0 < timeout:
            line = self.p.stdout.readline()
            assert line, "server closed stdout: " + self.p.stderr.read()[-2000:]
            ev = json.loads(line)
            assert isinstance(ev, dict) and "event" in ev
            out.append(ev)
            if until(ev):
                return out
        raise AssertionError("timeout")

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        rc = self.p.wait(30)
        self.p.stdout.close()
        self.p.stderr.close()
        return rc


@pytest.fixture
def server():
    s = Server()
    yield s
    if s.p.poll() is None:
        s.p.kill()
        s.p.wait()


def test_ready_ping_bad_requests_and_check(server):
    ev = server.read(lambda e: True)[0]
    from backend.contract import PROTOCOL

    assert ev["event"] == "ready" and ev["protocol"] == PROTOCOL == 1 and ev["pid"] == server.p.pid
    server.send({"id": 1, "cmd": "ping"})
    assert server.read(lambda e: True)[0] == {"event": "pong", "id": 1}
    server.send("{not json")
    ev = server.read(lambda e: True)[0]
    assert ev["event"] == "error" and ev["code"] == "bad_request"
    server.send({"id": 2, "cmd": "fly"})
    ev = server.read(lambda e: True)[0]
    assert ev["event"] == "error" and ev["id"] == 2 and "fly" in ev["message"]
    server.send({"id": 3, "cmd": "check"})
    ev = server.read(lambda e: e["event"] == "check")[-1]
    assert ev["ok"] is True and ev["torch"].startswith("2.") and ev["mediapipe"] and ev["problems"] == []
    assert all(v == "ok" for v in ev["weights"].values())
    server.send({"cmd": "shutdown"})
    assert server.close() == 0


def test_reconstruct_progress_result(server, tmp_path):
    server.read(lambda e: e["event"] == "ready")
    out = tmp_path / "bundle"
    server.send({"id": 7, "cmd": "reconstruct", "inputs": [str(p) for p in sorted(PHOTOS.glob("*.jpg"))],
                 "output": str(out), "options": {"texture": False, "subject": "srv", "bogus": 1}})
    evs = server.read(lambda e: e["event"] in ("result", "error"), timeout=300)
    assert evs[-1]["event"] == "result", evs[-1]
    prog = [e for e in evs if e["event"] == "progress"]
    assert all(e["id"] == 7 and 0.0 <= e["fraction"] <= 1.0 for e in prog)
    assert {"detect", "fit"} <= {e["stage"] for e in prog}
    res = evs[-1]
    assert res["id"] == 7 and res["output"] == str(out) and res["n_views"] == 3 and res["subject"] == "srv"
    assert json.loads((out / "result.json").read_text())["subject"] == "srv"
    assert server.close() == 0  # closing stdin ends the server


def test_errors_are_one_line_with_path(server, tmp_path):
    server.read(lambda e: e["event"] == "ready")
    missing = tmp_path / "nope.jpg"
    server.send({"id": 1, "cmd": "reconstruct", "inputs": [str(missing)], "output": str(tmp_path / "o")})
    ev = server.read(lambda e: e["event"] == "error", timeout=120)[-1]
    assert ev["id"] == 1 and ev["code"] == "bad_input" and str(missing) in ev["message"]
    assert "\n" not in ev["message"]
    server.send({"id": 2, "cmd": "reconstruct", "inputs": []})
    ev = server.read(lambda e: e["event"] == "error")[-1]
    assert ev["code"] == "bad_request"
    assert not (tmp_path / "o").exists()


def test_cancel_and_stdin_close_end_the_process(server, tmp_path):
    server.read(lambda e: e["event"] == "ready")
    out = tmp_path / "bundle"
    server.send({"id": 5, "cmd": "reconstruct", "inputs": [str(p) for p in sorted(PHOTOS.glob("*.jpg"))],
                 "output": str(out), "options": {"texture": False}})
    server.read(lambda e: e["event"] == "progress" and e["stage"] in ("detect", "fit"), timeout=120)
    server.send({"id": 5, "cmd": "cancel"})
    ev = server.read(lambda e: e["event"] in ("error", "result"), timeout=120)[-1]
    assert ev["event"] == "error" and ev["code"] == "cancelled"
    assert not out.exists() and not any(tmp_path.iterdir())  # no bundle, no temporary sibling
    assert server.close() == 0  # stdin closed: a clean exit (close() waits at most 30 s)


def test_invalid_utf8_is_answered_and_the_server_keeps_serving(server):
    """one bad byte on stdin used to end the server (UnicodeDecodeError in its read loop)."""
    server.read(lambda e: e["event"] == "ready")
    server.p.stdin.flush()
    server.p.stdin.buffer.write(b'{"id": 1, "cmd": "ping", "note": "caf\xe9"}\n')
    server.p.stdin.buffer.flush()
    ev = server.read(lambda e: True)[0]
    assert ev == {"event": "error", "id": None, "code": "bad_request", "path": None,
                  "message": "request is not valid UTF-8 (byte 0xe9 at position 37)"}
    server.send({"id": 2, "cmd": "ping"})
    assert server.read(lambda e: True)[0] == {"event": "pong", "id": 2}
    assert server.close() == 0


BAD_REQUESTS = {
    "texture_size_negative": ({"options": {"texture_size": -5}}, "'options.texture_size' must be from 64 to 8192 (got -5)"),
    "texture_size_string": ({"options": {"texture_size": "2048"}}, "'options.texture_size' must be a whole number (got '2048')"),
    "face_index_negative": ({"options": {"face_index": -1}}, "'options.face_index' must be at least 0 (got -1)"),
    "texture_not_bool": ({"options": {"texture": "no"}}, "'options.texture' must be true or false (got 'no')"),
    "device_unknown": ({"options": {"device": "tpu"}}, "'options.device' must be one of auto, cpu, cuda (got 'tpu')"),
    "smoothing_negative": ({"options": {"smoothing": -1}}, "'options.smoothing' must be a number of at least 0 (got -1)"),
    "max_frames_zero": ({"options": {"max_frames": 0}}, "'options.max_frames' must be at least 1 (got 0)"),
    "options_not_object": ({"options": [1]}, "'options' must be an object (got list)"),
    "output_relative": ({"output": "bundle"}, "'output' must be an absolute folder path (got 'bundle')"),
    "output_not_text": ({"output": 5}, "'output' must be an absolute folder path (got 5)"),
    "input_relative": ({"inputs": ["front.jpg"]}, "'inputs[0]' must be an absolute file path (got 'front.jpg')"),
}


def test_bad_options_and_paths_are_bad_request_before_any_work(server, tmp_path):
    """texture_size -5 failed only after the fit; a relative output landed in the server's working
    folder (the project root). Each request is answered at once, before the job's first progress event."""
    server.read(lambda e: e["event"] == "ready")
    good = {"cmd": "reconstruct", "inputs": [str(PHOTOS / "front.jpg")], "output": str(tmp_path / "b"),
            "options": {"texture": False}}
    for i, (case, (change, message)) in enumerate(BAD_REQUESTS.items()):
        req = {**good, "id": i, **change}
        if "options" in change and isinstance(change["options"], dict):
            req["options"] = {**good["options"], **change["options"]}
        server.send(req)
        ev = server.read(lambda e: True)[0]
        assert ev == {"event": "error", "id": i, "code": "bad_request", "path": None, "message": message}, case
    assert not (tmp_path / "b").exists() and not (REPO / "bundle").exists()
    server.send({"id": 99, "cmd": "ping"})
    assert server.read(lambda e: True)[0] == {"event": "pong", "id": 99}
    assert server.close() == 0
