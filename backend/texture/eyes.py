"""Eye textures from the photos: iris, pupil and sclera on the ICT eyeballs.

ICT's eyeball parts (eyeball_left, eyeball_right) share one UV layout in [0, 1]^2 (the right
eye is the left one mirrored, its UVs too: u -> 1 - u) and each holds two surfaces (ICT_README
"Eyeball Details", backend/eyes.py): an outer shell (first 770 vertices: cornea bulge and sclera,
transparent in Unreal's / MetaHuman's eye set-up that ICT follows; its front is one disc island
mapped nearly azimuthally around the cornea apex) and an inner ball (last 800 vertices: the iris
plane in front, with the pupil as its hole, mapped onto the whole disc; the sclera around it on
small islands). The two overlap in UV, so they get two images:

- eye_albedo.png: the inner ball, seen through a clear cornea: iris and pupil on the iris plane,
  sclera around and behind it.
- eye_shell_albedo.png: the outer shell, for a renderer that keeps it opaque: the iris and pupil
  as the camera sees them through the cornea in its centre, sclera outside the limbus.

Per photo and eye the shell, posed with the fitted gaze (backend/eyes.py turns each eyeball by
the angles its eyeLook* weights say), is projected, visible where the view's head raster shows
this eyeball inside the photo's eye-opening landmarks, and sampled, shifted by where MediaPipe's
iris points put the iris; both eyes and all photos go into one UV image (they share UVs).
Catchlights and samples of another hue than their ring (lid rim, lashes) are dropped. The
texture is then a radial profile (weighted median per distance from the axis: pupil, iris,
limbal ring, sclera) times the observed angular detail where seen, and iris fibres elsewhere.
When the iris is too small in every photo (under MIN_IRIS_PX across) only its colour is taken
from the photos and the rest is a parametric iris.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ..face_model import PARTS, FaceModel

EYE_SIZE = 512  # px of each eye image
SCLERA_VERTICES = 770  # per eyeball part, the first ones (ICT_README)
MIN_IRIS_PX = 12.0  # iris diameter in a photo below which its pattern is not used
_DEFAULT_IRIS = np.array([0.09, 0.05, 0.025], np.float32)  # linear, mid brown
_DEFAULT_SCLERA = np.array([0.72, 0.66, 0.6], np.float32)  # linear, warm white
_N_BINS = 96


_FRONT_CM, _FRONT_N = 1.6, 256  # the front lookup grid: +-1.6 cm around the axis, 256 cells a side


@dataclass
class _EyeGeometry:
    rho_limbus: float  # cm, iris radius
    front_lookup: np.ndarray  # (N, N, 2): shell texel (column, row) in front of each (X, Y) around the axis
    apex_offset: int  # vertex offset of the cornea apex within an eyeball part
    shell: dict  # per image texel of the LEFT eye's outer shell: tri_vertices (3, M), bary, texel, rho, theta, front
    ball: dict  # the same for its inner ball (iris plane in front, sclera around)


def _frame(axis):
    up = np.array([0.0, 1.0, 0.0])
    e1 = np.cross(up, axis)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    return e1, e2


def _paint(model: FaceModel, tri_ids: np.ndarray, size: int) -> dict:
    tuv = model.triangle_uvs()[tri_ids]
    px = np.stack([model.uv[:, 0] * size - 0.5, (1.0 - model.uv[:, 1]) * size - 0.5], 1)
    pts = np.round(px[tuv] * 16).astype(np.int32)
    img = np.full((size, size), -1, np.int32)
    for i in range(len(tri_ids)):
        cv2.fillPoly(img, [pts[i]], int(i), lineType=cv2.LINE_8, shift=4)
    rows, cols = np.nonzero(img >= 0)
    local = img[rows, cols]
    q = px[tuv[local]]
    ax, ay, bx, by, cx, cy = (q[:, i, j] for i in range(3) for j in range(2))
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    inv = 1.0 / np.where(np.abs(area) < 1e-12, 1e-12, area)
    w0 = ((bx - cols) * (cy - rows) - (by - rows) * (cx - cols)) * inv
    w1 = ((cx - cols) * (ay - rows) - (cy - rows) * (ax - cols)) * inv
    b = np.clip(np.stack([w0, w1, 1 - w0 - w1]), 0, None)
    b /= np.maximum(b.sum(0, keepdims=True), 1e-9)
    tv = model.triangles()[tri_ids[local]].T
    return {"texel": rows * size + cols, "tv": tv, "bary": b.astype(np.float32)}


def _tris_of(model, lo, hi):
    first = model.triangles()[:, 0]
    return np.nonzero((first >= lo) & (first < hi))[0]


@functools.lru_cache(maxsize=2)
def _geometry(model_key: int, size: int) -> _EyeGeometry:
    from ..eyes import IRIS_RADIUS_CM, eye_geometry
    from .atlas import _MODELS

    model = _MODELS[model_key]
    eg = eye_geometry(model)  # the eyeballs' centres and axes, shared with the fitter and the rig
    V = model.neutral.astype(np.float64)
    c, ax = eg.centre["left"], eg.axis["left"]
    e1, e2 = _frame(ax)
    a, b = PARTS["eyeball_left"]
    shell = _paint(model, _tris_of(model, a, a + SCLERA_VERTICES), size)
    ball = _paint(model, _tris_of(model, a + SCLERA_VERTICES, b), size)
    for d in (shell, ball):
        p = sum(V[d["tv"][k]] * d["bary"][k][:, None] for k in range(3)) - c
        d["rho"] = np.linalg.norm(np.cross(p, ax), axis=1).astype(np.float32)
        d["theta"] = np.arctan2(p @ e2, p @ e1).astype(np.float32)
        d["front"] = (p @ ax).astype(np.float32)
    # the texels a camera can see between the lids: the front of the shell within ~60 degrees of
    # the axis (the rest is always under the lids or in the socket)
    shell["observable"] = np.nonzero((shell["front"] > 0) & (shell["rho"] < 1.2))[0]
    # the shell's front, seen along the axis: a (X, Y) = rho (cos theta, sin theta) grid of its texel
    # positions, so any point of the eye (the inner ball's) finds the shell texel in front of it. The
    # texels are averaged into the grid's cells and the few empty cells filled by push-pull (the map
    # is smooth; scipy's griddata did the same in 2.2 s, this takes a few ms)
    from .blend import push_pull

    f = np.nonzero(shell["front"] > 0)[0]
    ys, xs = np.divmod(shell["texel"][f], size)
    k = (_FRONT_N - 1) / (2 * _FRONT_CM)
    gx = np.clip(np.round((shell["rho"][f] * np.cos(shell["theta"][f]) + _FRONT_CM) * k), 0, _FRONT_N - 1)
    gy = np.clip(np.round((shell["rho"][f] * np.sin(shell["theta"][f]) + _FRONT_CM) * k), 0, _FRONT_N - 1)
    cell = (gy * _FRONT_N + gx).astype(np.int64)
    n = np.bincount(cell, minlength=_FRONT_N ** 2).astype(np.float32)
    sx = np.bincount(cell, xs.astype(np.float64), minlength=_FRONT_N ** 2)
    sy = np.bincount(cell, ys.astype(np.float64), minlength=_FRONT_N ** 2)
    mean = np.stack([sx, sy], 1).astype(np.float32) / np.maximum(n, 1)[:, None]
    lookup = push_pull(mean.reshape(_FRONT_N, _FRONT_N, 2), (n > 0).reshape(_FRONT_N, _FRONT_N).astype(np.float32))
    apex = int(np.argmax((V[a:a + SCLERA_VERTICES] - c) @ ax))
    return _EyeGeometry(float(IRIS_RADIUS_CM), lookup, apex, shell, ball)


def _iris_px(view, V, geo) -> float:
    """Largest iris diameter, in photo pixels, of the two eyes in this view."""
    R = np.asarray(view["R"], np.float64)
    t = np.asarray(view["t"], np.float64)
    out = 0.0
    for k, part in enumerate(("eyeball_left", "eyeball_right")):
        a, _ = PARTS[part]
        P = V[a:a + SCLERA_VERTICES].astype(np.float64)
        zc = (R @ P.mean(0) + t)[2]
        if zc > 1e-3:
            out = max(out, 2 * geo.rho_limbus * float(view["fx"]) / zc)
    return out


def _eye_polygon(o, part_centre_px):
    """The photo's eye opening (landmark contour) nearest to a projected eyeball centre, or None."""
    if o.landmarks is None:
        return None
    from .regions import LEFT_EYE, RIGHT_EYE

    pts = np.asarray(o.landmarks, np.float64)
    if len(pts) >= 468:
        polys = [pts[RIGHT_EYE], pts[LEFT_EYE]]
    elif len(pts) == 68:
        polys = [pts[36:42], pts[42:48]]
    else:
        return None
    d = [np.linalg.norm(p.mean(0) - part_centre_px) for p in polys]
    p = polys[int(np.argmin(d))]
    # the contour must be the same eye: within one eye-width of the projected eyeball
    width = np.ptp(p[:, 0]) + 1e-6
    return p if min(d) < width else None


def _gaze_offset(o, geo, a, centre_px) -> np.ndarray:
    """Photo-space shift from where the fit puts this iris to where MediaPipe's iris points
    (468-477: centre, then four points on the iris edge) see it. The fitted gaze is only as good
    as the eye shapes' fit; the iris points are measured on the photo. Zero without them, or when
    they disagree with the fit by more than an iris radius (then one of the two is wrong)."""
    if o.landmarks is None or len(o.landmarks) < 478:
        return np.zeros(2)
    from .regions import LEFT_IRIS, RIGHT_IRIS

    pts = np.asarray(o.landmarks, np.float64)
    irises = [pts[RIGHT_IRIS], pts[LEFT_IRIS]]
    k = int(np.argmin([np.linalg.norm(i[0] - centre_px) for i in irises]))
    iris = irises[k]
    radius = np.linalg.norm(iris[1:] - iris[0], axis=1).mean()
    # the fitted iris centre: the cornea apex of the posed shell
    apex = o.xy[a + geo.apex_offset]
    off = iris[0] - apex
    return off if np.linalg.norm(off) < radius else np.zeros(2)


def _observe_eye(model, o, geo, part, size, to_linear):
    """(texel idx, colour (n, 3) linear, weight (n,)) of the shell texels one photo sees on one eye.

    A texel counts where the view's head raster (bake._observe; the eyeballs are among its
    occluders) shows this eyeball, inside the photo's own eye opening (landmark contour, shrunk
    by a raster pixel) when the landmarks have one, and, off the iris, not skin-coloured: the
    fitted lids are often a little more open than the photo's, and the lid must not paint the
    sclera."""
    a, stop = PARTS[part]
    off = a - PARTS["eyeball_left"][0]  # the right eye's vertices sit at the same offsets in its part
    shell = geo.shell
    sub = shell["observable"]
    tv = shell["tv"][:, sub] + off
    b = shell["bary"][:, sub]
    ras = o.ras
    hr, wr = ras.tri.shape
    xr = ((o.xy - np.array(o.box[:2], np.float32)) + 0.5) * o.scale - 0.5
    tp = xr[tv[0]] * b[0][:, None] + xr[tv[1]] * b[1][:, None] + xr[tv[2]] * b[2][:, None]
    tz = o.z[tv[0]] * b[0] + o.z[tv[1]] * b[1] + o.z[tv[2]] * b[2]
    V = o.V
    Vt = V[tv[0]] * b[0][:, None] + V[tv[1]] * b[1][:, None] + V[tv[2]] * b[2][:, None]
    c_posed = V[a:a + SCLERA_VERTICES].mean(0)  # the shell's centroid moves with the eye
    n = Vt - c_posed
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    R = np.asarray(o.R, np.float64)
    Xt = Vt @ R.T + o.t
    cosang = -((n @ R.T) * Xt).sum(1) / np.maximum(np.linalg.norm(Xt, axis=1), 1e-9)
    xi = np.clip(np.round(tp[:, 0]), 0, wr - 1).astype(int)
    yi = np.clip(np.round(tp[:, 1]), 0, hr - 1).astype(int)
    inside = (tp[:, 0] >= 0) & (tp[:, 0] <= wr - 1) & (tp[:, 1] >= 0) & (tp[:, 1] <= hr - 1)
    # the raster pixel must show this eyeball: a depth test would let the lids through, which lie
    # on the eyeball within a millimetre or two
    hit = ras.tri >= 0
    first = np.full(ras.tri.shape, -1, np.int64)
    first[hit] = model.triangles()[o.occ[ras.tri[hit]], 0]
    eye_px = ((first >= a) & (first < stop)).astype(np.uint8)
    centre_px = o.xy[a:a + SCLERA_VERTICES].mean(0)
    poly = _eye_polygon(o, centre_px)
    if poly is not None:
        pm = np.zeros((hr, wr), np.uint8)
        pr = ((poly - np.array(o.box[:2])) + 0.5) * o.scale - 0.5
        cv2.fillPoly(pm, [np.round(pr * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        # two raster pixels in from the lid margin: lashes and the lid's rim stay out
        eye_px &= cv2.erode(pm, np.ones((5, 5), np.uint8))
    vis = inside & (cosang > 0.2) & (eye_px[yi, xi] > 0) & (tz <= ras.depth[yi, xi] + 0.3)
    if vis.sum() < 10:
        return None
    # keep a raster pixel away from the lids: their edge pixels mix lid and eye
    d = cv2.distanceTransform(eye_px, cv2.DIST_L2, 3)[yi, xi]
    w = vis * np.clip((cosang - 0.2) / 0.6, 0, 1) * np.clip(d - 0.5, 0, 1)
    sel = w > 0
    if sel.sum() < 10:
        return None
    tpp = (o.xy[tv[0]] * b[0][:, None] + o.xy[tv[1]] * b[1][:, None] + o.xy[tv[2]] * b[2][:, None])[sel]
    tpp = tpp + _gaze_offset(o, geo, a, centre_px)
    from .raster import sample_points

    col = sample_points(o.image, tpp[:, 0].astype(np.float32), tpp[:, 1].astype(np.float32))
    col = to_linear(col.reshape(-1, 1, 3)).reshape(-1, 3)
    w = w[sel]
    # off the iris only sclera counts: pale (low saturation), not skin-coloured; the lid's wet
    # rim and the skin above it are neither
    off_iris = shell["rho"][sub][sel] > 0.9 * geo.rho_limbus
    sat = 1 - col.min(1) / np.maximum(col.max(1), 1e-4)
    ok = np.clip((0.55 - sat) / 0.2, 0, 1)
    if o.skin_model is not None:
        ok = ok * np.clip((0.6 - o.skin_model.likelihood(col)) / 0.3, 0, 1)
    w = np.where(off_iris, w * ok, w)
    texel = shell["texel"][sub][sel]
    if off:
        # the right eyeball is the left one mirrored, UVs too (u -> 1 - u): its vertex i sits at
        # the mirror of left vertex i's texel
        r, c = np.divmod(texel, size)
        texel = r * size + (size - 1 - c)
    keep = w > 0
    return texel[keep], col[keep].astype(np.float32), w[keep].astype(np.float32)


def _profile(rho, values, weights, edges):
    """Weighted median per radial bin -> (bins, C) with NaN where empty, and per-bin weight."""
    nb = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, rho) - 1, 0, nb - 1)
    out = np.full((nb, values.shape[1]), np.nan, np.float32)
    wsum = np.bincount(idx, weights, minlength=nb).astype(np.float32)
    valid = wsum > 0
    start = np.searchsorted(np.sort(idx), np.arange(nb))
    for c in range(values.shape[1]):
        order = np.lexsort((values[:, c], idx))  # by bin, then by value
        v_s, w_s = values[order, c], weights[order]
        cw = np.cumsum(w_s)
        before = np.concatenate([[0.0], cw])[start]
        pos = np.searchsorted(cw, before + 0.5 * wsum)
        out[valid, c] = v_s[np.minimum(pos[valid], len(v_s) - 1)]
    return out, wsum


def _fibres(rho, theta, rho_l, seed=7) -> np.ndarray:
    """Iris fibres: radial streaks (angular noise, slowly twisting outwards), unit-free, std 0.18."""
    rng = np.random.default_rng(seed)
    r = rho / rho_l
    k = np.arange(1, 60)
    amp = rng.normal(0, 1, len(k)) / np.sqrt(k)
    ph = rng.uniform(0, 2 * np.pi, len(k))
    # on a (radius, angle) table, then looked up: 59 cosines per texel would cost more than the rest
    rt = np.linspace(0, 2.0, 64, dtype=np.float32)[:, None]
    tt = np.linspace(-np.pi, np.pi, 720, endpoint=False, dtype=np.float32)[None, :]
    tab = np.zeros((64, 720), np.float32)
    for kk, a, p in zip(k, amp, ph):
        tab += a * np.cos(kk * tt + p + 3 * rt)
    tab *= 0.18 / max(float(tab.std()), 1e-6)
    tab = np.concatenate([tab, tab[:, :1]], 1)  # wrap the angle
    mx = ((theta + np.pi) / (2 * np.pi) * 720).astype(np.float32)
    my = (np.clip(r, 0, 2.0) / 2.0 * 63).astype(np.float32)
    from .raster import sample_points

    return sample_points(tab, mx, my)


def _parametric(rho, rho_l, fib, iris_col, sclera_col, pupil_frac):
    """Linear RGB (n, 3) of a parametric eye at distances rho (cm) from the axis, with fibres fib."""
    r = rho / rho_l
    n = len(rho)
    iris = iris_col[None] * (1 + fib[:, None]) * (0.75 + 0.35 * np.clip((r - pupil_frac) / 0.3, 0, 1))[:, None]
    limbal = 1 - 0.55 * np.clip((r - 0.85) / 0.15, 0, 1)
    iris = iris * limbal[:, None]
    sclera = sclera_col[None] * (1 - 0.15 * np.clip((r - 1.6) / 1.0, 0, 1))[:, None] \
        * np.array([1.0, 0.96, 0.95], np.float32)[None] ** np.clip(r - 1, 0, 2)[:, None]
    pupil = np.full((n, 3), 0.008, np.float32)
    t_pupil = np.clip((r - pupil_frac) / 0.04, 0, 1)[:, None]
    t_limbus = np.clip((r - 1.0) / 0.06, 0, 1)[:, None]
    col = pupil * (1 - t_pupil) + iris * t_pupil
    return (col * (1 - t_limbus) + sclera * t_limbus).astype(np.float32)


def bake_eyes(model: FaceModel, identity, views: list[dict], observed, device="cpu", size: int = EYE_SIZE,
              skin_tone: np.ndarray | None = None) -> dict:
    """Eye images from fitted views; observed = bake._View per view (posed vertices reused);
    skin_tone: the albedo's median skin colour (linear), the reference a sclera must outshine."""
    from .atlas import _MODELS
    from .bake import to_linear, to_srgb

    _MODELS.setdefault(id(model), model)
    geo = _geometry(id(model), size)
    shell = geo.shell
    n_tex = size * size
    acc = np.zeros((n_tex, 3), np.float64)
    wacc = np.zeros(n_tex, np.float64)
    samples = []  # (texel, colour, weight) for the profile
    iris_px = 0.0
    for v, o in zip(views, observed):
        V = o.V
        ip = _iris_px(v, V, geo)
        iris_px = max(iris_px, ip)
        for part in ("eyeball_left", "eyeball_right"):
            got = _observe_eye(model, o, geo, part, size, to_linear)
            if got is None:
                continue
            tex, col, w = got
            w = w * min(1.0, ip / (2 * MIN_IRIS_PX))  # small eyes count less
            samples.append((tex, col, w))
    rho_l = geo.rho_limbus
    rho_tex = np.zeros(n_tex, np.float32)
    rho_tex[shell["texel"]] = shell["rho"]
    front_tex = np.zeros(n_tex, np.float32)
    front_tex[shell["texel"]] = shell["front"]
    edges = np.linspace(0, 1.6, _N_BINS + 1).astype(np.float32)
    info = {"iris_px_max": round(iris_px, 1), "source": "parametric", "views_with_eyes": len(samples)}

    iris_col, sclera_col, pupil_frac = _DEFAULT_IRIS.copy(), _DEFAULT_SCLERA.copy(), 0.4
    sclera_seen = False
    prof = None
    if samples:
        tex = np.concatenate([s[0] for s in samples])
        col = np.concatenate([s[1] for s in samples])
        w = np.concatenate([s[2] for s in samples])
        front = front_tex[tex] > 0
        tex, col, w = tex[front], col[front], w[front]
        rho = rho_tex[tex]
        lum = col @ np.array([0.2126, 0.7152, 0.0722], np.float32)
        # catchlights: far brighter than the median of their ring
        p0, _ = _profile(rho, lum[:, None], w, edges)
        ring = np.clip(np.searchsorted(edges, rho) - 1, 0, _N_BINS - 1)
        ref = np.nan_to_num(p0[ring, 0], nan=float(np.median(lum)))
        ok = lum < 2.2 * ref + 0.02
        # ... and samples of another hue than their ring, or much darker: the lid's wet rim, lashes and
        # their shadow that the eye-opening contour let through (an iris ring is one hue; sclera too)
        ok &= lum > 0.5 * ref
        lg = np.log(np.maximum(col, 1e-4))
        hue = np.stack([lg[:, 0] - lg[:, 1], lg[:, 2] - lg[:, 1]], 1)
        ph, _ = _profile(rho, hue, w, edges)
        dev = np.abs(hue - np.nan_to_num(ph[ring], nan=0.0)).max(1)
        ok &= dev < 0.15
        tex, col, w, rho = tex[ok], col[ok], w[ok], rho[ok]
        in_iris = (rho > 0.45 * rho_l) & (rho < 0.85 * rho_l)
        if w[in_iris].sum() > 0:
            iris_col = np.median(col[in_iris], 0).astype(np.float32)
        in_sclera = (rho > 1.15 * rho_l) & (rho < 1.8 * rho_l)
        if w[in_sclera].sum() > 0:
            sclera_col = np.median(col[in_sclera], 0).astype(np.float32)
            sclera_seen = True
        if iris_px >= MIN_IRIS_PX:
            prof, pw = _profile(rho, col, w, edges)
            info["source"] = "photos"
            np.add.at(acc, tex, col * w[:, None])
            np.add.at(wacc, tex, w)
        else:
            info["source"] = "parametric, iris colour from the photos"
    # a sclera darker than ~0.6x the skin is lashes, lid shadow and iris edge mixed (small eyes,
    # squints): then a white at the photos' exposure, and the photos only for the iris
    luma = np.array([0.2126, 0.7152, 0.0722], np.float32)
    ref = None if skin_tone is None else float(np.asarray(skin_tone, np.float32) @ luma)
    if ref is not None and (not sclera_seen or float(sclera_col @ luma) < 0.6 * ref):
        sclera_seen = False
        sclera_col = (_DEFAULT_SCLERA * np.clip(1.6 * ref / float(_DEFAULT_SCLERA @ luma), 0.3, 1.3)).astype(np.float32)
    info["sclera"] = "photos" if sclera_seen else "parametric"
    # parametric base everywhere, then the observed radial profile where it has support,
    # then the observed texels where seen
    sel = shell["texel"]
    if "fibres" not in shell:
        shell["fibres"] = _fibres(shell["rho"], shell["theta"], rho_l)
    base = _parametric(shell["rho"], rho_l, shell["fibres"], iris_col, sclera_col, pupil_frac)
    base[shell["front"] <= 0] = sclera_col * 0.9
    if prof is not None:
        ring = np.clip(np.searchsorted(edges, shell["rho"]) - 1, 0, _N_BINS - 1)
        has = (pw > 0.5 * np.median(pw[pw > 0])) if (pw > 0).any() else pw > 0
        prof_ok = np.where(has[:, None], prof, np.nan)
        # fill the bins nobody saw from their neighbours (1-D interpolation over rho)
        centres = 0.5 * (edges[:-1] + edges[1:])
        for c in range(3):
            good = np.isfinite(prof_ok[:, c])
            if good.sum() >= 2:
                prof_ok[:, c] = np.interp(centres, centres[good], prof_ok[good, c])
        pr = prof_ok[ring]
        # the observed profile replaces the parametric radial shape; the iris keeps its fibres
        r = shell["rho"] / rho_l
        fib = 1 + shell["fibres"] * ((r > pupil_frac + 0.05) & (r < 1.0))
        limit = np.inf if sclera_seen else 1.0
        use = np.isfinite(pr).all(1) & (shell["front"] > 0) & (r < limit)
        base[use] = pr[use] * fib[use, None]
        seen = wacc[sel] > 0
        mean = np.zeros_like(base)
        mean[seen] = (acc[sel][seen] / wacc[sel][seen, None]).astype(np.float32)
        a = np.clip(wacc[sel] / 0.5, 0, 1)[:, None].astype(np.float32) * (r < limit)[:, None]
        base = base * (1 - a) + mean * a
    # a pupil is black: photos show it grey (blur over 10-20 px, flare); darken towards its centre
    r = shell["rho"] / rho_l
    t = np.clip((r - 0.6 * pupil_frac) / (0.35 * pupil_frac), 0, 1)[:, None]
    base = np.minimum(base, 0.015 * (1 - t) + base * t)
    eye_lin = np.zeros((n_tex, 3), np.float32)
    eye_lin[sel] = base
    eye_lin = _pad(eye_lin.reshape(size, size, 3), sel, size)

    # the inner ball: the shell's colour in front of each of its points (the iris plane behind the
    # cornea, the sclera around it), its back the sclera's colour, darker
    ball = geo.ball
    X = ball["rho"] * np.cos(ball["theta"])
    Y = ball["rho"] * np.sin(ball["theta"])
    k = (_FRONT_N - 1) / (2 * _FRONT_CM)
    from .raster import sample_points

    pos = sample_points(geo.front_lookup, ((X + _FRONT_CM) * k).astype(np.float32),
                        ((Y + _FRONT_CM) * k).astype(np.float32))
    bcol = sample_points(eye_lin, pos[:, 0], pos[:, 1])
    back = ball["front"] <= 0
    bcol[back] = sclera_col * 0.85
    ball_lin = np.zeros((n_tex, 3), np.float32)
    ball_lin[ball["texel"]] = bcol
    ball_lin = _pad(ball_lin.reshape(size, size, 3), ball["texel"], size)
    info["iris_rgb"] = [int(c) for c in to_srgb(iris_col)]
    info["size"] = size
    return {"eye_albedo": to_srgb(ball_lin), "eye_shell_albedo": to_srgb(eye_lin), "info": info}


def _pad(img, texels, size):
    from .blend import push_pull

    m = np.zeros(size * size, np.float32)
    m[texels] = 1
    m = m.reshape(size, size)
    fill = push_pull(img, m)
    return np.where(m[..., None] > 0, img, fill).astype(np.float32)
