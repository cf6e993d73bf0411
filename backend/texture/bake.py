"""Bake a skin albedo, a hair mask, eye textures and a detail normal map in the ICT UV layout
from fitted photos.

Per photo (coarse grid, see atlas.py): the fitted mesh is z-buffered in a small raster of the
head's box; every texel's surface point is projected, depth-tested and given a confidence
from the view angle and its distance to silhouettes, depth edges and the image border. The
photo's skin is segmented (segment.py: person mask, a skin-colour model learned from this
photo's inner face, the face oval) and only skin texels keep a weight: background, clothing,
hair and occluders never reach the albedo. The view's second-order SH lighting is estimated
from the fitted normals and divided out, and per-view exposure differences are removed with
least-squares gains.

Then at full resolution, one photo at a time: the photo is sampled (cv2.remap) and split into
its own low band (the coarse grid) and detail band. Detail bands are averaged with sharpened
weights (the best-placed photo dominates), low bands are multi-band blended on the coarse
grid: no seams between photos, no double edges from small misregistration.

What no photo saw as skin is completed (fill.py): tone from a membrane on the mesh (seamless
across UV cuts, mirrored from the other side where that was seen), detail from the mirrored
side or from random-phase noise with the spectrum of this person's skin. The hair mask
(hair.py) says where the photos saw hair and where it continues; with hair="keep" the observed
hair is blended back over the skin albedo through it.

Images are handled in linear light (sRGB decoded) so shading divides correctly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..cpu import one_torch_thread, thread_budget
from ..face_model import FaceModel
from . import atlas as atlas_mod
from .blend import multiband_blend, push_pull
from .detail import detail_normal_map
from .fill import best_window, mesh_fill, random_phase_noise, tile
from .metrics import masked_ssim, psnr
from .raster import project, rasterize, vertex_normals
from .regions import get_regions
from .segment import fit_skin_colour, photo_masks
from .sh import SH_ORDER, estimate_lighting, shading

MOUTH_SRGB = (110, 45, 45)  # the mouth socket's island, at the lips; darker towards the throat
HAIR_MODES = ("remove", "keep")

_SRGB_TO_LIN = np.where(np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92,
                        ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4).astype(np.float32)
_LIN_LUT_N = 4096
_LIN_TO_SRGB = np.clip(np.round(255 * np.where(
    np.linspace(0, 1, _LIN_LUT_N) <= 0.0031308, np.linspace(0, 1, _LIN_LUT_N) * 12.92,
    1.055 * np.linspace(0, 1, _LIN_LUT_N) ** (1 / 2.4) - 0.055)), 0, 255).astype(np.uint8)


def to_linear(img_u8: np.ndarray) -> np.ndarray:
    img_u8 = np.asarray(img_u8)
    if img_u8.dtype == np.uint8 and img_u8.ndim >= 2 and img_u8.shape[-1] in (1, 3, 4) and img_u8.size > 4096:
        return cv2.LUT(img_u8, _SRGB_TO_LIN.reshape(1, 256))  # threaded, ~10x numpy's fancy indexing
    return _SRGB_TO_LIN[img_u8]


def to_srgb(lin: np.ndarray) -> np.ndarray:
    idx = np.clip(lin * (_LIN_LUT_N - 1) + 0.5, 0, _LIN_LUT_N - 1).astype(np.int32)
    return _LIN_TO_SRGB[idx]


# De-lighting divides by at most 1/0.6 and at least 1/1.6: where the fitted normals are
# wrong (eyelid folds, nostrils, lip corners) an unclamped SH shading can be near zero
# and would turn those texels white; the re-render uses the same clamp.
SHADING_RANGE = (0.6, 1.6)
# texels whose summed view confidence is below this are filled, not trusted (grazing
# views at a silhouette sample background as often as skin)
MIN_SEEN = 0.08
# ... and from this one up they are used as they are; in between they are mixed with
# the fill by confidence, which hides silhouette fringes without a seam
FULL_SEEN = 0.15
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
# weights^4: the best-placed view dominates the detail band (little ghosting where the
# fitted cameras disagree by a pixel or two) while views of similar quality still average,
# which suppresses JPEG noise; on the sample photos 2..10 moved PSNR by ~1 dB.
BLEND_SHARPNESS = 4.0
# the head's box is rasterized with its longer side at this many pixels: depth is smooth, and
# the weights already keep away from depth edges by more than a raster pixel
RASTER_PX = 384


# texture texels per photo pixel (on the face) that the bake works at: finer texels than the
# photos' pixels carry no information, they only cost time (see work_size)
TEXELS_PER_PHOTO_PX = 0.7
MIN_WORK_SIZE = 512


def work_size(model: FaceModel, views: list[dict], posed: list[np.ndarray], size: int) -> int:
    """The texture size the bake runs at: the smallest of size, size/2, size/4... (not under 512)
    that still has TEXELS_PER_PHOTO_PX texels per photo pixel on the face of the sharpest view.
    The result is resampled to `size`. 1024 px photos of a head (~35 photo px per cm of face)
    bake at 1024 (34 texels/cm); 4000 px photos at the full 2048."""
    from ..face_model import PARTS

    a, b = PARTS["face"]
    px_per_cm = 0.0
    for v, V in zip(views, posed):
        R = np.asarray(v["R"], np.float64)
        z = (V[a:b].astype(np.float64) @ R[2] + float(np.asarray(v["t"], np.float64)[2]))
        z = z[z > 1e-3]
        if len(z):
            px_per_cm = max(px_per_cm, float(v["fx"]) / float(np.median(z)))
    need = TEXELS_PER_PHOTO_PX * px_per_cm
    s = size
    while s % 2 == 0 and s // 2 >= MIN_WORK_SIZE and atlas_mod.face_texels_per_cm(model, s // 2) >= need:
        s //= 2
    return s


def shading_clipped(n, L):
    return np.clip(shading(n, L), *SHADING_RANGE)


def _smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _check(cancel):
    if cancel is not None and cancel():
        from ..errors import CancelledError

        raise CancelledError("cancelled by the user")


@dataclass
class _View:
    """What one photo contributes, on the coarse grid (full-resolution arrays are made per view
    in the blend loop and dropped)."""
    image: np.ndarray  # (H, W, 3) uint8
    R: np.ndarray
    t: np.ndarray
    fx: float
    V: np.ndarray  # posed vertices
    xy: np.ndarray  # (N, 2) projected vertices, photo px
    z: np.ndarray  # (N,) depth cm
    box: tuple  # head box in the photo (x0, y0, x1, y1)
    scale: float  # raster pixels per photo pixel
    ras: object  # Raster of the head box
    occ: np.ndarray  # triangle ids (into model.triangles()) behind ras.tri's indices
    w_vis: np.ndarray  # (h, w) visibility x angle x margins
    w_seen: np.ndarray  # (h, w) visibility with small margins only
    skin_c: np.ndarray  # (h, w) skin weight from the masks (0..1)
    hair_c: np.ndarray  # (h, w) hair evidence (0..1)
    person_c: np.ndarray  # (h, w)
    colour_c: np.ndarray  # (h, w, 3) linear, de-lit
    shading_c: np.ndarray | None  # (h, w, 3)
    light: np.ndarray | None  # (9, 3)
    masks: np.ndarray  # (H, W, 3) uint8 packed photo masks: skin, person, hair
    nv: np.ndarray  # vertex normals (model space)
    skin_model: object
    landmarks: np.ndarray | None = None  # the photo's 2D landmarks (MediaPipe 478 or iBUG 68), if known


def _rgb(img) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:  # greyscale photo
        img = np.repeat(img[..., None], 3, 2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8, copy=False)  # drop alpha


def _head_box(xy, H, W, margin=0.08):
    lo, hi = xy.min(0), xy.max(0)
    pad = margin * (hi - lo).max()
    x0, y0 = np.floor(np.maximum(lo - pad, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(hi + pad, [W - 1, H - 1])).astype(int) + 1
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def _to_raster(xy, box, s):
    """Photo px -> raster px of the box at scale s (pixel centres stay centres)."""
    return ((xy - np.array(box[:2], np.float32)) + 0.5) * s - 0.5


def _observe(model: FaceModel, at, reg, V, view: dict, occ, skin_tris, device, skin_only=True) -> _View | None:
    img = _rgb(view["image"])
    H, W = img.shape[:2]
    R = np.asarray(view["R"], np.float64)
    xy, Xc = project(V, R, view["t"], view["fx"], view["fy"], view["cx"], view["cy"])
    n_skin = int(skin_tris.size and model.triangles()[skin_tris].max() + 1)
    front = Xc[:n_skin, 2] > 1e-3
    box = _head_box(xy[:n_skin][front], H, W) if front.any() else None
    if box is None:
        return None
    x0, y0, x1, y1 = box
    s = min(1.0, RASTER_PX / max(x1 - x0, y1 - y0))
    hr, wr = max(1, int(round((y1 - y0) * s))), max(1, int(round((x1 - x0) * s)))
    xr = _to_raster(xy, box, s)
    tris = model.triangles()
    ras = rasterize(xr, Xc[:, 2], tris[occ], hr, wr, device=device, cull_backfaces=True)

    nv = vertex_normals(V, tris[skin_tris])  # model space
    ncam = nv @ R.T.astype(np.float32)
    cos_v = -(ncam * Xc).sum(1) / np.maximum(np.linalg.norm(Xc, axis=1), 1e-9)
    attrs = np.concatenate([xy, Xc[:, 2:3], cos_v[:, None]], 1)
    ta = at.low_grid(at.interpolate_low(attrs), fill=-1e4)
    u, v, z, cosang = (ta[..., k] for k in range(4))
    ur, vr = (u - x0 + 0.5) * s - 0.5, (v - y0 + 0.5) * s - 0.5  # _to_raster, per texel
    zs = np.maximum(z, 1e-6)
    # depth of the nearest surface, eroded by one raster pixel: a texel just behind an occluding
    # edge (cheek behind the nose) is hidden rather than given the edge's colour
    D = np.where(ras.mask, ras.depth, np.inf).astype(np.float32)
    D = cv2.erode(np.where(np.isfinite(D), D, 1e6).astype(np.float32), np.ones((3, 3), np.uint8))
    pxi = np.clip(np.round(ur), 0, wr - 1).astype(np.int32)
    pyi = np.clip(np.round(vr), 0, hr - 1).astype(np.int32)
    zbuf = D[pyi, pxi]
    inside = (z > 1e-6) & (u >= -0.5) & (u <= W - 0.5) & (v >= -0.5) & (v <= H - 0.5)
    # tolerance: a couple of raster pixels' worth of depth along the surface slope, plus 3 mm
    pix_cm = zs / (float(view["fx"]) * s)
    tol = 0.3 + 2.0 * pix_cm / np.maximum(cosang, 0.25)
    visible = inside & (cosang > 0) & (zbuf < 1e5) & (z <= zbuf + tol)

    # distance to the outer silhouette and to inner depth discontinuities (nose against
    # cheek, lips against teeth): misfit shows up there first. The silhouette gets a wide
    # margin (background and hair lie just outside it), inner edges a narrow one.
    cover = ras.mask
    face_px = np.sqrt(max(int(cover.sum()), 1))
    d0_sil = max(2.0, 0.06 * face_px)
    d0_jump = max(1.0, 0.015 * face_px)
    Dj = np.where(cover, ras.depth, 1e6).astype(np.float32)
    edge = np.zeros_like(cover)
    dx = np.abs(np.diff(Dj, axis=1)) > 1.5  # cm
    dy = np.abs(np.diff(Dj, axis=0)) > 1.5
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    edge &= cover
    d_jump = cv2.distanceTransform(np.where(edge, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)[pyi, pxi]
    d_sil = cv2.distanceTransform(cover.astype(np.uint8), cv2.DIST_L2, 5)[pyi, pxi]
    d_border = np.minimum(np.minimum(u + 0.5, W - 0.5 - u), np.minimum(v + 0.5, H - 0.5 - v)) * s
    w_ang = np.clip((cosang - 0.1) / 0.9, 0, 1) ** 1.5
    w_vis = (visible * w_ang * _smoothstep(d_sil / d0_sil) * _smoothstep(d_jump / d0_jump)
             * _smoothstep(d_border / d0_sil)).astype(np.float32)
    # seen at all (for the hair mask: the crown and the back of the head are only ever seen at
    # grazing angles near the silhouette, where the colour is no use but "hair or not" still is)
    w_seen = (visible * np.clip(cosang / 0.3, 0, 1) * _smoothstep(d_sil / max(1.0, 0.2 * d0_sil))
              * _smoothstep(d_border / 2.0)).astype(np.float32)

    # coarse photo samples, linear light
    mapc = np.ascontiguousarray(np.stack([u, v], -1), np.float32)
    colour = to_linear(cv2.remap(img, mapc, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))

    # this photo's skin colour, from its inner face as the fit sees it
    pick = reg.sample & (w_vis > 0.3)
    skin_model = fit_skin_colour(colour[pick], w_vis[pick]) if skin_only else None
    person = view.get("person") if skin_only else None
    face_photo_px = face_px / s
    masks = photo_masks(img, to_linear, skin_model, person, box, face_photo_px)
    if skin_only:
        _mask_eyes(masks.packed, model, ras, occ, box, s)
    mc = cv2.remap(masks.packed, mapc, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT).astype(np.float32)
    mc *= 1.0 / 255
    skin_c = reg.trusted * mc[..., 1] + (1 - reg.trusted) * mc[..., 0]
    person_c = mc[..., 1]
    hair_c = mc[..., 2] * reg.hair_prior

    o = _View(img, R, np.asarray(view["t"], np.float64), float(view["fx"]), V, xy, Xc[:, 2], box, s, ras, occ, w_vis, w_seen, skin_c.astype(np.float32), hair_c.astype(np.float32),
              person_c, colour, None, None, masks.packed, nv, skin_model,
              None if view.get("landmarks") is None else np.asarray(view["landmarks"], np.float64))
    return o


def _mask_eyes(packed, model, ras, occ, box, s) -> None:
    """Where the fitted eyeballs show, and a raster pixel around them, the photo is eye, not skin:
    the lid rims are trusted face, and without this they would take the sclera's colour."""
    from ..face_model import PARTS

    hit = ras.tri >= 0
    first = np.full(ras.tri.shape, -1, np.int64)
    first[hit] = model.triangles()[occ[ras.tri[hit]], 0]
    a, b = PARTS["eyeball_left"][0], PARTS["eyeball_right"][1]
    eye = ((first >= a) & (first < b)).astype(np.uint8)
    if not eye.any():
        return
    eye = cv2.dilate(eye, np.ones((3, 3), np.uint8))
    x0, y0, x1, y1 = box
    keep = cv2.resize(1 - eye, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    packed[y0:y1, x0:x1, :2] *= keep[..., None]


def _delight(o: _View, at, reg, rng) -> None:
    """Estimate the view's SH lighting from its skin and divide it out of the coarse colours."""
    w = o.w_vis * o.skin_c
    cand = np.flatnonzero(((at.low_face & (w > 0.3)) | (reg.sample & (w > 0.2))).ravel())
    if len(cand) < 200:  # too little face seen to say anything about the light
        cand = np.flatnonzero((w > 0).ravel())
    if len(cand) < 50:
        return
    pick = np.sort(rng.choice(cand, min(12000, len(cand)), replace=False))
    n = at.interpolate_low_at(o.nv, at.low_index[pick])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    col = o.colour_c.reshape(-1, 3)[pick]
    L = estimate_lighting(n, col, w.ravel()[pick], iterations=4)
    # Divide out grey shading only: per-channel SH is noisy where the normals are
    # poor and would paint colour fringes; the light's colour stays in the albedo.
    L = L @ _LUMA
    L = np.repeat(L[:, None], 3, 1)
    # normalise so the mean shading over the seen face is 1: the albedo keeps the
    # photo's overall brightness, only the shading variation goes
    L = L / max(float(shading(n, L).mean()), 1e-4)
    # shading is smooth: evaluated per vertex and interpolated, not per texel
    nv = o.nv / np.maximum(np.linalg.norm(o.nv, axis=1, keepdims=True), 1e-9)
    sh = at.low_grid(at.interpolate_low(shading_clipped(nv, L)), fill=1.0)
    np.clip(sh, *SHADING_RANGE, out=sh)  # the ring's extrapolation can leave the range
    o.colour_c = o.colour_c / sh
    o.shading_c = sh.astype(np.float32)
    o.light = L


def _gains(views: list[_View], min_w: float = 0.2) -> np.ndarray:
    """Per-view, per-channel exposure gains (log least squares over pairwise overlaps, mean 1)."""
    n = len(views)
    if n < 2:
        return np.ones((n, 3), np.float32)
    rows, rhs, wts = [], [], []
    wv = [o.w_vis * o.skin_c for o in views]
    for i in range(n):
        for j in range(i + 1, n):
            both = (wv[i] > min_w) & (wv[j] > min_w)
            cnt = int(both.sum())
            if cnt < 100:
                continue
            mi = views[i].colour_c[both].mean(0)
            mj = views[j].colour_c[both].mean(0)
            r = np.zeros(n)
            r[i], r[j] = 1, -1
            rows.append(r)
            rhs.append(np.log(np.maximum(mj, 1e-4)) - np.log(np.maximum(mi, 1e-4)))
            wts.append(np.sqrt(cnt))
    if not rows:
        return np.ones((n, 3), np.float32)
    A = np.array(rows) * np.array(wts)[:, None]
    b = np.array(rhs) * np.array(wts)[:, None]
    A = np.vstack([A, np.full((1, n), 10.0 * max(wts))])  # mean log gain 0
    b = np.vstack([b, np.zeros((1, 3))])
    g = np.linalg.lstsq(A, b, rcond=None)[0]
    return np.exp(np.clip(g, -1, 1)).astype(np.float32)


class _Layer:
    """Accumulates one blended layer (skin, or hair) over the views at full resolution."""

    def __init__(self, at):
        self.at = at
        self.num = np.zeros((at.height, at.width, 3), np.float32)
        self.den = np.zeros((at.height, at.width), np.float32)
        self.wsum = np.zeros((at.height, at.width), np.float32)
        self.low, self.low_w = [], []

    def add(self, col: np.ndarray, w: np.ndarray, sharp: np.ndarray | None):
        """col (H, W, 3) one view's colours, w (H, W) its weights, sharp (H, W) the factor that makes
        the detail band's weights sharper than w (None: w itself)."""
        at = self.at
        # this view's own low band: weighted box average of what it saw, on the coarse grid (a
        # texel that is barely skin must not pass its colour on at full weight)
        ws_low = at.downsample(w)
        low = at.downsample(col * w[..., None]) / np.maximum(ws_low, 1e-6)[..., None]
        # in place from here: col becomes this view's weighted detail band (at 2048 every full-size
        # temporary is 100 MB)
        col -= at.upsample(low)
        ws = w if sharp is None else w * sharp
        col *= ws[..., None]
        self.num += col
        self.den += ws
        self.wsum += w
        self.low.append(low)
        self.low_w.append(ws_low)

    def result(self, levels: int):
        """(blended colour full-res, summed weight full-res, coarse low band, coarse summed weight)."""
        at = self.at
        d = self.num
        d /= np.maximum(self.den, 1e-8)[..., None]
        low, lw = multiband_blend(self.low, self.low_w, levels=levels, sharpness=BLEND_SHARPNESS)
        d += at.upsample(low)
        self.num = None
        return d, self.wsum, low, lw


def _complete(model, at, reg, obs, seen, low, seen_c, mirror=True, exemplar_mask=None, seed=0,
              prior=None, reject_outliers=True):
    """Observed layer -> complete layer (see fill.py). Returns (full (H, W, 3), conf (H, W), coarse tone (h, w, 3))."""
    conf_c = _smoothstep((seen_c - MIN_SEEN) / (FULL_SEEN - MIN_SEEN)) * at.low_skin
    # soft edge inside what was seen: the last ~2 coarse texels before a boundary fade out
    soft_c = cv2.GaussianBlur(cv2.erode(conf_c, np.ones((3, 3), np.uint8)), (0, 0), 1.0)
    conf = _smoothstep((seen - MIN_SEEN) / (FULL_SEEN - MIN_SEEN))
    conf = np.minimum(conf, at.upsample(soft_c))
    conf *= at.skin
    vals = np.maximum(at.vertex_sample(low), 1e-4)
    tone_c = _tone(model, at, vals, at.vertex_sample(soft_c[..., None])[:, 0], prior, mirror)
    # outside the trusted face, a seen texel more than ~2x off the tone around it is a leftover of
    # something else (a hair strand lighter than hair, a dark gap between strands, a collar's
    # shadow): it is dropped and the tone solved again without it
    ratio = np.abs(np.log(np.maximum(low @ _LUMA, 1e-4) / np.maximum(tone_c @ _LUMA, 1e-4)))
    bad = (conf_c > 0) & (reg.trusted < 0.5) & (ratio > np.log(2.2))
    if reject_outliers and bad.any():
        bad = cv2.dilate(bad.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        conf_c = np.where(bad, 0, conf_c).astype(np.float32)
        soft_c = cv2.GaussianBlur(cv2.erode(conf_c, np.ones((3, 3), np.uint8)), (0, 0), 1.0)
        conf = np.minimum(conf, at.upsample(soft_c))
        tone_c = _tone(model, at, vals, at.vertex_sample(soft_c[..., None])[:, 0], prior, mirror)
    # the observed layer relative to its own smooth version: detail in all bands above the tone's
    sm_c = cv2.GaussianBlur(conf_c[..., None] * low + (1 - conf_c[..., None]) * tone_c, (0, 0), 1.5)
    rel = obs / at.upsample(np.maximum(sm_c, 1e-4))
    rel -= 1.0
    np.clip(rel, -0.9, 2.0, out=rel)
    if reject_outliers:
        # the same, texel by texel, against the tone: specks of hair, shadow or background finer
        # than the coarse grid, darker or lighter than 0.45..2.2x, or of another hue (one channel at a
        # time: full-size temporaries are 33 MB each at 2048, not 100)
        lg = [np.log(np.maximum(obs[..., c], 1e-4)) - at.upsample(np.log(tone_c[..., c])) for c in range(3)]
        lum = lg[0] * _LUMA[0] + lg[1] * _LUMA[1] + lg[2] * _LUMA[2]
        odd = (np.abs(lum) > np.log(2.2)) | (np.abs(lg[0] - lg[1]) > 0.25) | (np.abs(lg[2] - lg[1]) > 0.25)
        del lg, lum
        odd &= (conf > 0) & (at.upsample(reg.trusted) < 0.5)
        if odd.any():
            odd = cv2.dilate(odd.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            conf[odd] = 0
        del odd
    rel *= conf[..., None]  # unseen texels carry no detail (the mirror reads this)
    syn = _skin_noise(at, rel, conf, exemplar_mask, seed)
    if mirror:
        mc = atlas_mod.mirror(conf) * (1 - conf)
        fill_rel = atlas_mod.mirror(rel)
    else:
        mc = np.zeros_like(conf)
        fill_rel = np.zeros_like(rel)
    del rel
    if syn is not None:
        syn *= 1 - mc
        fill_rel += syn[..., None]
    del syn, mc
    fill = at.upsample(tone_c)
    fill_rel += 1
    fill *= fill_rel
    del fill_rel
    # observed where confident, fill elsewhere
    out = obs
    out -= fill
    out *= conf[..., None]
    out += fill
    return out, conf, tone_c


def _tone(model, at, vals, wts, prior, mirror):
    """Per-vertex observed colours -> the completed tone on the coarse grid (fill.mesh_fill)."""
    tone_v = mesh_fill(model, at.skin_vertices, vals, wts, prior=prior, mirror_weight=0.7 if mirror else 0.0)
    full_v = np.zeros((model.n_vertices, 3), np.float32)
    full_v[at.skin_vertices] = tone_v
    return np.maximum(at.low_grid(at.interpolate_low(full_v)), 1e-4)


def _skin_noise(at, rel, conf, region_c, seed):
    """Tileable relative-luminance detail with the spectrum of the best-seen patch of `region_c`."""
    if region_c is None:
        return None
    f = at.factor
    P = max(32, at.size // 8)
    Pc = max(4, P // f)
    conf_c = at.downsample(conf)
    win = best_window(region_c & (conf_c > 0.95), Pc)
    if win is None or win[2] < 0.9:
        return None
    r, c = win[0] * f, win[1] * f
    patch = rel[r:r + P, c:c + P] @ _LUMA
    if patch.shape != (P, P):
        return None
    noise = random_phase_noise(patch, seed=seed)
    return tile(noise, at.height, at.width)


def _flat_islands(albedo, at, skin_tone):
    """Colours for the islands that never take photo texels (mouth socket, eye sockets)."""
    for part, m in at.flat.items():
        if not m.any():
            continue
        d = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 3)
        depth = d / max(float(d.max()), 1.0)  # 0 at the island's rim (lips / lids), 1 deep inside
        if part == "mouth_socket":
            base = to_linear(np.array(MOUTH_SRGB, np.uint8))
            shade = 1.0 - 0.75 * _smoothstep(depth / 0.8)
        else:
            base = skin_tone * 0.55
            shade = 1.0 - 0.4 * depth
        albedo[m] = base[None] * shade[m][:, None]


def bake_textures(model: FaceModel, identity: np.ndarray, views: list[dict], size: int = 2048, device="cpu",
                  delight: bool = True, detail: bool = True, metrics: bool = True, hair: str = "remove",
                  eyes: bool = True, cancel=None, probes: list | None = None, skin_only: bool = True) -> dict:
    """Bake textures from fitted views. See the module docstring.

    views: dicts with image (H, W, 3) uint8 RGB, expression, R, t, fx, fy, cx, cy, and optionally
    person (H, W) person probability (MediaPipe selfie segmenter; float 0..1 or uint8 0..255) and landmarks
    ((478, 2) MediaPipe points, for the iris colour). hair: "remove" (skin over the scalp) or
    "keep" (the photos' hair blended back through the hair mask). cancel: callable, checked
    between stages and views (raises CancelledError). probes: optional per-view float images
    (H, W) baked with exactly the skin albedo's weights (development: contamination measure).
    skin_only=False bakes whatever the cameras see on the mesh (no segmentation; development:
    measures the geometry of the bake on textures that are not skin-coloured).

    Returns {albedo: uint8 (size, 2*size, 3), hair_mask: uint8 (size, 2*size), normal: uint8
    (size, 2*size, 3) | None, eye_albedo / eye_shell_albedo: uint8 (E, E, 3) | None, lighting, metrics:
    [{psnr_db, ssim, mask_pixels}], timings_s, layout, coverage, renders, seen, ...}.
    """
    if not views:
        raise ValueError("bake_textures needs at least one view")
    if hair not in HAIR_MODES:
        raise ValueError(f"hair must be one of {HAIR_MODES}, not {hair!r}")
    size = int(size)
    if size < 64:
        raise ValueError(f"texture size {size} is too small (minimum 64)")
    T, C = {}, {}  # wall and CPU seconds per stage (CPU is the steadier figure on a busy machine)
    t_all, c_all = time.perf_counter(), time.process_time()
    clock = [t_all, c_all]

    def mark():
        clock[:] = [time.perf_counter(), time.process_time()]

    def lap(name):
        T[name], C[name] = time.perf_counter() - clock[0], time.process_time() - clock[1]

    from ..eyes import posed_vertices  # the eyeballs turned by each view's gaze, as the fit and the rig have them

    posed = [posed_vertices(model, identity, np.asarray(v["expression"], np.float32)).astype(np.float32)
             for v in views]
    work = work_size(model, views, posed, size)
    at = atlas_mod.get_atlas(model, work)
    reg = get_regions(model, work)
    occ = np.nonzero(atlas_mod.tri_part_mask(model, atlas_mod.OCCLUDER_PARTS))[0]
    skin_tris = np.nonzero(atlas_mod.tri_part_mask(model, atlas_mod.SKIN_PARTS))[0]
    lap("atlas")
    _check(cancel)

    mark()
    def observe(i):
        _check(cancel)
        o = _observe(model, at, reg, posed[i], views[i], occ, skin_tris, device, skin_only)
        if o is not None and delight:
            _delight(o, at, reg, np.random.default_rng(i))
        return o

    # the views are independent and most of their work (OpenCV, numpy's large ops, the rasterizer)
    # releases the GIL: two at a time use two cores, where the process has them
    side_by_side = len(views) > 1 and str(device) == "cpu" and thread_budget() > 1
    # the rasterizer wants one torch thread; held here, around both views, so the two running at once do not
    # each set and restore it behind the other's back
    with one_torch_thread():
        if side_by_side:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2) as pool:
                seen_views = list(pool.map(observe, range(len(views))))
        else:
            seen_views = [observe(i) for i in range(len(views))]
    kept = [i for i, o in enumerate(seen_views) if o is not None]
    obs = [seen_views[i] for i in kept]
    if not obs:
        raise ValueError("no view sees the fitted head")
    lap("observe")

    mark()
    gains = _gains(obs)
    wmax_c = np.zeros(at.low_shape, np.float32)
    for o in obs:
        np.maximum(wmax_c, o.w_vis * o.skin_c, out=wmax_c)
    trusted = at.upsample(reg.trusted)
    hair_prior = at.upsample(reg.hair_prior) if hair == "keep" else None
    skin_layer = _Layer(at)
    hair_layer = _Layer(at) if hair == "keep" else None
    probe_layer = _Layer(at) if probes is not None else None
    for k, (o, g) in enumerate(zip(obs, gains)):
        _, xy_full = at.full(o.xy)
        col = to_linear(cv2.remap(o.image, xy_full, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        m = cv2.remap(o.masks, xy_full, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        wv = at.upsample(o.w_vis)
        s = m[..., 1].astype(np.float32)
        s *= trusted
        s += (1 - trusted) * m[..., 0]
        s *= wv / 255.0
        if o.shading_c is not None:
            col *= at.upsample(g / o.shading_c)  # gain and de-lighting in one smooth factor
        else:
            col *= g
        # sharpened weights for the detail band, w * (w / wmax)^(p-1): the factor is smooth, so it is
        # made on the coarse grid
        wc = o.w_vis * o.skin_c
        sharp = at.upsample(np.minimum(wc / np.maximum(wmax_c, 1e-6), 1.0) ** (BLEND_SHARPNESS - 1))
        skin_layer.add(col, s, sharp)
        if probe_layer is not None:
            p = cv2.remap(np.asarray(probes[kept[k]], np.float32), xy_full, None, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
            probe_layer.add(np.repeat(p[..., None], 3, 2), s, sharp)
        if hair_layer is not None:
            hw = m[..., 2].astype(np.float32) * (wv / 255.0) * hair_prior
            hair_layer.add(col, hw, None)
        del col, m, s, xy_full
        _check(cancel)
    levels = max(2, int(np.log2(min(at.low_shape))) - 4)
    obs_skin, seen, low, seen_c = skin_layer.result(levels)
    lap("blend")

    mark()
    face_seen = reg.sample & (seen_c > FULL_SEEN)
    skin_tone = np.median(low[face_seen], 0) if face_seen.sum() > 50 else np.array([0.45, 0.3, 0.25], np.float32)
    albedo, conf, tone_c = _complete(model, at, reg, obs_skin, seen, low, seen_c, exemplar_mask=reg.sample,
                                     reject_outliers=skin_only)
    del obs_skin
    lap("fill")
    _check(cancel)

    mark()
    from .hair import hair_mask as make_hair_mask

    hm_c = make_hair_mask(model, at, reg, obs)
    hm = at.upsample(hm_c) * at.skin
    if hair_layer is not None:
        obs_hair, hseen, hlow, hseen_c = hair_layer.result(levels)
        region = (reg.hair_prior > 0.5) & (hseen_c > FULL_SEEN)
        hair_alb, _, _ = _complete(model, at, reg, obs_hair, hseen, hlow, hseen_c, exemplar_mask=region, seed=1,
                                   prior=_hair_tone(hlow, hseen_c, reg), reject_outliers=False)
        del obs_hair
        a = hm[..., None]
        albedo *= 1 - a
        albedo += hair_alb * a
        del hair_alb
    lap("hair")

    mark()
    _flat_islands(albedo, at, skin_tone)
    islands = at.skin.copy()
    for m in at.flat.values():
        islands |= m
    # pad every island outward so mip-mapping never sees black
    low_alb = at.downsample(albedo)
    isl_c = at.downsample(islands.astype(np.float32))
    pad = at.upsample(push_pull(low_alb / np.maximum(isl_c, 1e-6)[..., None], (isl_c > 0.99).astype(np.float32)))
    albedo[~islands] = pad[~islands]
    del pad
    np.clip(albedo, 0, 1, out=albedo)
    lap("pad")

    normal = None
    detail_stats = None
    if detail:
        mark()
        normal, detail_stats = detail_normal_map(albedo, conf, at.face, work)
        lap("detail")
    _check(cancel)

    eye = None
    if eyes:
        mark()
        from .eyes import bake_eyes

        eye = bake_eyes(model, identity, [views[i] for i in kept], obs, device=device, skin_tone=skin_tone)
        lap("eyes")
        _check(cancel)

    albedo_u8 = _resample(to_srgb(albedo), size)
    hair_u8 = _resample(np.clip(hm * 255 + 0.5, 0, 255).astype(np.uint8), size)
    if normal is not None:
        normal = _resample(normal, size)
    out_metrics, renders = [], []
    if metrics:
        mark()
        alb_c = at.downsample(albedo)
        for o, g in zip(obs, gains):
            render, photo, mask = _render_view(o, model, at, alb_c, o.light, g, reg.trusted)
            flat = np.broadcast_to(photo[mask].mean(0) if mask.any() else np.zeros(3), photo.shape)
            out_metrics.append({"psnr_db": round(psnr(photo, render, mask), 3),
                                "ssim": round(masked_ssim(photo, render, mask), 4),
                                "mask_pixels": int(mask.sum()),
                                # the same pixels predicted by their mean colour: "no texture at all"
                                "flat_psnr_db": round(psnr(photo, flat, mask), 3)})
            renders.append(render)
        lap("metrics")
    T["total"], C["total"] = time.perf_counter() - t_all, time.process_time() - c_all

    result = {
        "albedo": albedo_u8,
        "hair_mask": hair_u8,
        "hair": hair,
        "normal": normal,
        "eye_albedo": None if eye is None else eye["eye_albedo"],
        "eye_shell_albedo": None if eye is None else eye["eye_shell_albedo"],
        "eyes": None if eye is None else eye["info"],
        # linear radiance ~ albedo_linear * Y(n_model) @ L, per view; the exposure gain is folded in
        "lighting": None if not delight else [None if o.light is None else (o.light / g[None, :]).round(5).tolist()
                                              for o, g in zip(obs, gains)],
        "lighting_basis": SH_ORDER,
        "gains": gains.round(4).tolist(),
        "views_used": kept,
        "metrics": out_metrics,
        "renders": renders,
        "coverage": float((seen[at.skin] > MIN_SEEN).mean()),
        "detail": detail_stats,
        "timings_s": {k: round(v, 3) for k, v in T.items()},
        "cpu_s": {k: round(v, 3) for k, v in C.items()},
        "layout": {"width": 2 * size, "height": size, "u_range": [0.0, 2.0], "v_range": [0.0, 1.0],
                   "note": "image covers UDIM tiles 1001 and 1002 side by side; sample at (u/2, v)"},
        # at the work size (work_size texels; the images above are resampled to `size`)
        "work_size": work,
        "albedo_linear": albedo,
        "seen": seen,  # summed skin confidence per texel; >= FULL_SEEN means "from the photos only"
        "conf": conf,
    }
    if probe_layer is not None:
        pr, _, _, _ = probe_layer.result(levels)
        result["probe"] = pr[..., 0]
    return result


def _resample(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size:
        return img
    return cv2.resize(img, (2 * size, size), interpolation=cv2.INTER_LINEAR if img.shape[0] < size else cv2.INTER_AREA)


def _hair_tone(hlow, hseen_c, reg):
    sel = (hseen_c > FULL_SEEN) & (reg.hair_prior > 0.5)
    if sel.sum() > 20:
        return np.median(hlow[sel], 0)
    return np.array([0.03, 0.02, 0.015], np.float32)  # dark brown


def _render_view(o: _View, model: FaceModel, at, albedo_c: np.ndarray, L, gain, trusted_c):
    """Re-render the textured face into the view's raster (the head box at RASTER_PX): returns
    (render uint8, photo at the same scale uint8, metric mask). The mask is the face where the
    photo shows this person's skin or the trusted face (lips, brows): hair and background are not
    in the albedo, by design, and two pixels in from the silhouette."""
    from .raster import sample_points

    tris = model.triangles()
    ras = o.ras
    x0, y0, x1, y1 = o.box
    hr, wr = ras.tri.shape
    photo = cv2.resize(o.image[y0:y1, x0:x1], (wr, hr), interpolation=cv2.INTER_AREA)
    hit = ras.tri >= 0
    gt = np.full(ras.tri.shape, -1, np.int64)
    gt[hit] = o.occ[ras.tri[hit]]
    face = hit & atlas_mod.tri_part_mask(model, ("face",))[np.maximum(gt, 0)]
    ys, xs = np.nonzero(face)
    t = gt[ys, xs]
    b = ras.bary[ys, xs]
    uv = (model.uv[model.triangle_uvs()[t]] * b[..., None]).sum(1)
    h = albedo_c.shape[0]
    mx = (uv[:, 0] * h - 0.5).astype(np.float32)
    my = ((1 - uv[:, 1]) * h - 0.5).astype(np.float32)
    col = sample_points(albedo_c, mx, my)
    if L is not None:
        n = (o.nv[tris[t]] * b[..., None]).sum(1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        col = col * shading_clipped(n, L / gain[None, :])
    else:
        col = col / gain
    render = photo.copy()
    render[ys, xs] = to_srgb(col)
    pm = cv2.resize(o.masks[y0:y1, x0:x1], (wr, hr), interpolation=cv2.INTER_AREA)
    keep = ((sample_points(trusted_c, mx, my) > 0.5) & (pm[ys, xs, 1] > 127)) | (pm[ys, xs, 0] > 127)
    mask = np.zeros((hr, wr), np.uint8)
    mask[ys[keep], xs[keep]] = 1
    face_e = cv2.erode(face.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
    return render, photo, (mask & face_e).astype(bool)
