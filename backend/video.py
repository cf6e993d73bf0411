"""Video input: decode and sample frames, find the face in each, and package the tracked animation.

The pipeline (pipeline.reconstruct) uses these pieces in order: `detect_video` (one decoding pass;
only landmarks are kept, so memory does not grow with the clip), `select_views` (a few well-spread
frames), `identity_views` (a second pass decodes just those frames as photo-like views for the
shared-identity fit and the texture), `track_video` (every frame, identity and focal fixed) and
`animation_files` (result.json section + animation.npz, docs/result-bundle.md "Animation").
"""
from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CancelledError, InputError, NoFaceError
from .landmarks.base import Detection, pick_by_size

TARGET_FPS = 30.0  # default sampling keeps at most this rate: faces move little faster, and time is per frame
MAX_SIDE = 1920  # frames are shrunk to this long side: landmarks gain nothing above, memory and texture time do
IDENTITY_FRAMES = 8  # 6 -> 8 frames: focal error 14.5 -> 10.4 % (bench_video seed 0, 1 px), same fit time
DEFAULT_SMOOTHING = 1.0  # halves the amplitude at 5 Hz, keeps 97 % at 2 Hz: a 0.25 s blink survives


@dataclass
class VideoFrames:
    path: Path
    video_fps: float
    frame_step: int
    size: tuple  # (w, h) of the decoded, upright, possibly shrunk frames
    frames: np.ndarray  # (N,) source frame numbers of the sampled frames
    detections: list  # Detection, or None where no face was found
    timings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.video_fps / self.frame_step

    @property
    def valid(self) -> np.ndarray:
        return np.array([d is not None for d in self.detections])


def default_frame_step(fps: float) -> int:
    return max(1, math.ceil(fps / TARGET_FPS - 0.01))


def _quiet():
    """FFmpeg and OpenCV print their own diagnostics ("moov atom not found", "[ WARN:0] ...", per-frame decoder
    complaints) straight to file descriptor 2, around the one-line error or warning the user is owed."""
    try:
        from .landmarks.mediapipe_detector import native_stderr_silenced
    except ImportError:
        return contextlib.nullcontext()
    return native_stderr_silenced()


def _open(path: Path):
    import cv2

    try:
        if path.is_dir():
            raise InputError("is a folder, not a video", path)
        if not path.is_file():
            from .images import missing_reason

            raise InputError(missing_reason(path), path)
        if path.stat().st_size == 0:
            raise InputError("file is empty (0 bytes)", path)
        with open(path, "rb"):  # VideoCapture reports no reason; a permission problem should say so
            pass
    except PermissionError:
        raise InputError("cannot read the file: permission denied", path) from None
    with _quiet():
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise InputError("cannot open the video: damaged, incomplete, or a format/codec OpenCV's FFmpeg cannot "
                         "decode (convert it to H.264 MP4)", path)
    # phone videos store portrait as landscape + a rotation tag; FFmpeg applies it when asked
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def _frames(path: Path, frame_step: int, max_frames: int | None, max_side: int, wanted=None):
    """Yield (frame number, RGB uint8) of every frame_step-th frame (or only the frame numbers in `wanted`)."""
    import cv2

    cap = _open(path)
    try:
        n_out, idx = 0, -1
        last = max(wanted) if wanted else None
        while True:
            idx += 1
            if last is not None and idx > last:
                return
            take = idx in wanted if wanted is not None else idx % frame_step == 0
            with _quiet():
                # grab without retrieve skips the colour conversion of unsampled frames
                ok, bgr = cap.grab(), None
                if ok and take:
                    ok, bgr = cap.retrieve()
            if not ok or (take and bgr is None):
                return
            if not take:
                continue
            h, w = bgr.shape[:2]
            if max(h, w) > max_side:
                k = max_side / max(h, w)
                bgr = cv2.resize(bgr, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
            yield idx, np.ascontiguousarray(bgr[..., ::-1])
            n_out += 1
            if max_frames and n_out >= max_frames:
                return
    finally:
        cap.release()


def probe(path) -> tuple[float, int]:
    """(frames per second, frame count as the container reports it; may be 0 or wrong)."""
    import cv2

    cap = _open(Path(path))
    try:
        fps, count = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return fps, count


def _pick_face(faces: list[Detection], prev_box, face_index, path=None) -> Detection:
    """The chosen person across frames: at the start the largest (or --face-index), then whoever overlaps
    the previous frame's face most, so a second person walking in does not steal the track."""
    if prev_box is None:
        return pick_by_size(faces, face_index, path)

    def iou(b):
        ix = max(0.0, min(b[2], prev_box[2]) - max(b[0], prev_box[0]))
        iy = max(0.0, min(b[3], prev_box[3]) - max(b[1], prev_box[1]))
        inter = ix * iy
        area_p = (prev_box[2] - prev_box[0]) * (prev_box[3] - prev_box[1])
        return inter / max((b[2] - b[0]) * (b[3] - b[1]) + area_p - inter, 1e-9)

    return max(faces, key=lambda d: iou(d.box))


def detect_video(path, frame_step: int | None = None, max_frames: int | None = None, face_index=None,
                 progress=None, cancel=None, max_side: int = MAX_SIDE) -> VideoFrames:
    """Decode the sampled frames and run MediaPipe on each (IMAGE mode: every frame is found afresh, so one
    bad frame cannot drag the next ones along)."""
    from .landmarks import make_detector

    path = Path(path)
    fps, count = probe(path)
    warnings = []
    if not (math.isfinite(fps) and 0 < fps < 1000):
        warnings.append(f"{path.name}: frame rate unknown ({fps}); assuming 30 fps")
        fps = 30.0
    if frame_step is not None and int(frame_step) < 1:
        raise InputError(f"--frame-step must be at least 1 (got {frame_step})")
    if max_frames is not None and int(max_frames) < 1:
        raise InputError(f"--max-frames must be at least 1 (got {max_frames})")
    step = int(frame_step) if frame_step else default_frame_step(fps)
    expected = (count + step - 1) // step if count > 0 else 0
    if max_frames:
        expected = min(expected, int(max_frames)) if expected else int(max_frames)
    frames, dets, size = [], [], None
    t_decode = t_detect = 0.0
    prev_box = None
    size_changed = False
    mp = make_detector("mediapipe")
    try:
        t = time.perf_counter()
        for idx, rgb in _frames(path, step, max_frames, max_side):
            t_decode += time.perf_counter() - t
            if cancel is not None and cancel():
                raise CancelledError("cancelled by the user")
            if size is None:
                size = (rgb.shape[1], rgb.shape[0])
            elif (rgb.shape[1], rgb.shape[0]) != size:  # resolution switch mid-stream (screen recordings)
                warnings.append(f"{path.name}: frame size changes at frame {idx}; stopped there")
                size_changed = True
                break
            t = time.perf_counter()
            faces = mp.detect_all(rgb)
            det = _pick_face(faces, prev_box, face_index, path) if faces else None
            if det is not None:
                det.n_faces, prev_box = len(faces), det.box
            t_detect += time.perf_counter() - t
            frames.append(idx)
            dets.append(det)
            if progress is not None:
                frac = len(frames) / expected if expected else 0.0
                progress("detect", min(frac, 0.99), f"finding the face in frame {idx}")
            t = time.perf_counter()
    finally:
        mp.close()
    if not frames:
        raise InputError("video has no readable frames (empty, damaged, or a codec OpenCV's FFmpeg cannot "
                         "decode)", path)
    if max_frames and len(frames) < int(max_frames) and not size_changed:
        warnings.append(f"{path.name}: only {len(frames)} frames to track, fewer than the {max_frames} --max-frames "
                        f"asked for (the video is shorter{f'; frame step {step}' if step > 1 else ''})")
    if count > 0 and not max_frames and frames[-1] + step < count - step:
        warnings.append(f"{path.name}: decoding stopped at frame {frames[-1]} of {count} (damaged file?)")
    n_valid = sum(d is not None for d in dets)
    if n_valid == 0:
        raise NoFaceError(f"no face found in any of the {len(frames)} sampled frames", path)
    if n_valid < len(frames):
        warnings.append(f"{path.name}: no face in {len(frames) - n_valid} of {len(frames)} frames; "
                        "their pose and expression are interpolated")
    return VideoFrames(path=path, video_fps=float(fps), frame_step=step, size=size, frames=np.array(frames),
                       detections=dets, timings={"decode": t_decode, "detect": t_detect}, warnings=warnings)


def select_views(model, spec, vf: VideoFrames, n: int = IDENTITY_FRAMES) -> tuple[list[int], int]:
    """Indices (into the sampled frames) of the identity frames, and the rest-pose (most frontal) one."""
    from .fit.tracking import rough_poses, select_identity_frames

    pts, valid = _points(vf)
    angles = rough_poses(model, spec, pts, valid, vf.size)
    activity = np.array([sum(d.blendshapes.values()) / len(d.blendshapes) if d is not None and d.blendshapes
                         else 0.0 for d in vf.detections])
    return select_identity_frames(angles, valid, n, activity)


def identity_views(vf: VideoFrames, picks: list[int], with_images: bool = True) -> list:
    """Photo-like views of the picked frames (images decoded again: the first pass kept none)."""
    from .pipeline import View

    images = {}
    if with_images:
        wanted = {int(vf.frames[i]) for i in picks}
        images = dict(_frames(vf.path, 1, None, MAX_SIDE, wanted=wanted))
        missing = wanted - images.keys()
        if missing:
            raise InputError(f"frame {min(missing)} could not be decoded a second time (damaged video?)", vf.path)
    views = []
    for i in picks:
        fno = int(vf.frames[i])
        views.append(View(name=f"frame_{fno:06d}", source_path=str(vf.path), width=vf.size[0], height=vf.size[1],
                          detection=vf.detections[i], image=images.get(fno), frame=fno))
    return views


def _points(vf: VideoFrames):
    L = next(d for d in vf.detections if d is not None).points.shape[0]
    pts = np.zeros((len(vf.frames), L, 2))
    for k, d in enumerate(vf.detections):
        if d is not None:
            pts[k] = d.points
    return pts, vf.valid


def track_video(model, spec, res, vf: VideoFrames, reference: int, smoothing: float, device="cpu", progress=None,
                cancel=None):
    """Pose and expression of every sampled frame, with the identity and focal of the identity fit `res`.
    MediaPipe's own scores of each frame are its start and, as for a photo, a prior."""
    from .fit.inputs import detection_scores
    from .fit.tracking import track

    pts, valid = _points(vf)
    scores = detection_scores(model, vf.detections)
    init = None if scores is None else np.nan_to_num(scores)
    return track(model, spec, res.identity[0], float(res.focal[0, 0]), pts, valid, vf.size, fps=vf.fps,
                 smoothing=smoothing, reference=reference, init_expression=init, device=device,
                 progress=progress, cancel=cancel, scores=scores)


def arkit_matrix(expression_names) -> np.ndarray:
    """(E, 52) map from our shape weights to the standard ARKit ones (face_model.shape_names_to_arkit, linear)."""
    from .face_model import ARKIT_52, shape_names_to_arkit

    M = np.zeros((len(expression_names), len(ARKIT_52)))
    for i, n in enumerate(expression_names):
        M[i] = list(shape_names_to_arkit({n: 1.0}).values())
    return M


def animation_files(model, vf: VideoFrames, trk, picks, reference, res, smoothing, timings) -> tuple[dict, bytes]:
    """result.json's `animation` section and the bytes of animation.npz (docs/result-bundle.md)."""
    from .face_model import ARKIT_52, gaze_angles

    N = len(vf.frames)
    expr = trk.expression.astype(np.float32)
    names = model.expression_names
    gaze = np.array([[gaze_angles(dict(zip(names, e)))[s] for s in ("left", "right")] for e in expr], np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, frame=vf.frames.astype(np.int64), time_s=vf.frames / vf.video_fps, valid=vf.valid,
                        expression=expr, gaze_deg=gaze, arkit_names=np.array(ARKIT_52),
                        arkit=(expr @ arkit_matrix(names)).astype(np.float32),
                        R=trk.R.astype(np.float64), t=trk.t.astype(np.float64),
                        reprojection_px=trk.reprojection_px.astype(np.float32))
    section = {
        "source_path": str(vf.path), "fps": vf.fps, "video_fps": vf.video_fps, "frame_step": vf.frame_step,
        "n_frames": N, "width": int(vf.size[0]), "height": int(vf.size[1]), "file": "animation.npz",
        "camera": {"fx": float(res.focal[0, 0]), "fy": float(res.focal[0, 0]), "cx": float(res.cx[0, 0]),
                   "cy": float(res.cy[0, 0])},
        "reference_frame": int(reference), "identity_frames": [int(i) for i in picks],
        "smoothing": float(smoothing), "timings_s": timings,
        "tracking_fps": N / max(timings.get("track", 0.0), 1e-9),
    }
    return section, buf.getvalue()


def video_views(path, frame_step=None, max_frames=None, face_index=None, progress=None, cancel=None):
    """Everything the pipeline needs before fitting: (VideoFrames, identity views, their indices, rest frame)."""
    from .face_model import load_face_model
    from .fit import landmark_spec

    vf = detect_video(path, frame_step, max_frames, face_index, progress, cancel)
    model = load_face_model()
    picks, ref = select_views(model, landmark_spec("mediapipe478", model), vf)
    t = time.perf_counter()
    views = identity_views(vf, picks)
    vf.timings["decode"] += time.perf_counter() - t
    return vf, views, picks, ref
