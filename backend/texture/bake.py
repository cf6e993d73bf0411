"""Bake an albedo (and a detail normal map) in the ICT UV layout from fitted photos.

Per view: the fitted mesh is z-buffered in screen space (torch rasterizer), every skin
texel's surface point is projected and depth-tested against it, the photo is sampled
there (bilinear), and the texel gets a confidence weight from the view angle and its
distance to silhouettes / depth edges / the image border. Optionally the view's
second-order SH lighting is estimated from the fitted normals and divided out. Per-view
exposure differences are removed with least-squares gains, views are combined with
multi-band blending, unseen texels are filled from the mirror side of the face and then
with a smooth push-pull skin fill, and non-skin islands get flat colours.

Images are handled in linear light (sRGB decoded) so shading divides correctly.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from ..face_model import FaceModel
from . import atlas as atlas_mod
from .blend import fill_holes, multiband_blend, push_pull
from .detail import detail_normal_map
from .metrics import masked_ssim, psnr
from .raster import Raster, project, rasterize, sample_points, vertex_normals
from .sh import SH_ORDER, estimate_lighting, shading

# flat colours (sRGB) for islands that must not take photo texels
FLAT_SRGB = {"mouth_socket": (110, 45, 45), "eye_socket_left": None, "eye_socket_right": None}

_SRGB_TO_LIN = np.where(np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92,
                        ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4).astype(np.float32)
_LIN_LUT_N = 4096
_LIN_TO_SRGB = np.clip(np.round(255 * np.where(
    np.linspace(0, 1, _LIN_LUT_N) <= 0.0031308, np.linspace(0, 1, _LIN_LUT_N) * 12.92,
    1.055 * np.linspace(0, 1, _LIN_LUT_N) ** (1 / 2.4) - 0.055)), 0, 255).astype(np.uint8)


def to_linear(img_u8: np.ndarray) -> np.ndarray:
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
# the mirror image / fill by confidence, which hides silhouette fringes without a seam
FULL_SEEN = 0.15
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
# weights^4: the best-placed view dominates the fine bands (little ghosting where the
# fitted cameras disagree by a pixel or two) while views of similar quality still average,
# which suppresses JPEG noise; on the sample photos 2..10 moved PSNR by ~1 dB.
BLEND_SHARPNESS = 4.0


def shading_clipped(n, L):
    return np.clip(shading(n, L), *SHADING_RANGE)


def _smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


class _View:
    """Everything one photo contributes: samples, weights, raster and normals."""


def _observe(model: FaceModel, at: atlas_mod.Atlas, identity, view: dict, occ: np.ndarray,
             skin_tris: np.ndarray, device) -> _View:
    img = np.asarray(view["image"])
    if img.ndim == 2:  # greyscale photo
        img = np.repeat(img[..., None], 3, 2)
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8, copy=False)  # drop alpha
    H, W = img.shape[:2]
    V = model.vertices(identity, np.asarray(view["expression"], np.float32))
    R = np.asarray(view["R"], np.float64)
    xy, Xc = project(V, R, view["t"], view["fx"], view["fy"], view["cx"], view["cy"])
    tris = model.triangles()
    ras = rasterize(xy, Xc[:, 2], tris[occ], H, W, device=device)

    nv = vertex_normals(V, tris[skin_tris])  # model space
    # Per-vertex projection and view angle, interpolated to texels: triangles are a few
    # mm, so affine interpolation of projected positions is exact to well under 0.01 px.
    ncam = nv @ R.T.astype(np.float32)
    cos_v = -(ncam * Xc).sum(1) / np.maximum(np.linalg.norm(Xc, axis=1), 1e-9)
    attrs = np.stack([xy[:, 0], xy[:, 1], Xc[:, 2], cos_v], 1)
    ta = at.interpolate(attrs, model)
    u, v, z, cosang = ta[:, 0], ta[:, 1], ta[:, 2], ta[:, 3]
    zs = np.maximum(z, 1e-6)
    pxi = np.clip(np.round(u), 0, W - 1).astype(np.int64)
    pyi = np.clip(np.round(v), 0, H - 1).astype(np.int64)
    inside = (z > 1e-6) & (u >= -0.5) & (u <= W - 0.5) & (v >= -0.5) & (v <= H - 0.5)
    zbuf = ras.depth[pyi, pxi]
    # tolerance: a couple of pixels' worth of depth along the surface slope, plus 3 mm
    pix_cm = zs / float(view["fx"])
    tol = 0.3 + 2.0 * pix_cm / np.maximum(cosang, 0.25)
    visible = inside & (cosang > 0) & np.isfinite(zbuf) & (z <= zbuf + tol)

    # distance to the outer silhouette and to inner depth discontinuities (nose against
    # cheek, lips against teeth): misfit shows up there first. The silhouette gets a wide
    # margin (background and hair lie just outside it), inner edges a narrow one.
    cover = ras.mask
    face_px = np.sqrt(max(int(cover.sum()), 1))
    d0_sil = max(2.0, 0.06 * face_px)
    d0_jump = max(1.5, 0.015 * face_px)
    D = np.where(cover, ras.depth, 1e6).astype(np.float32)
    jump = 1.5  # cm
    edge = np.zeros_like(cover)
    dx = np.abs(np.diff(D, axis=1)) > jump
    dy = np.abs(np.diff(D, axis=0)) > jump
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    edge &= cover
    d_jump = cv2.distanceTransform(np.where(edge, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)[pyi, pxi]
    d_sil = cv2.distanceTransform(cover.astype(np.uint8), cv2.DIST_L2, 5)[pyi, pxi]
    d_border = np.minimum(np.minimum(u + 0.5, W - 0.5 - u), np.minimum(v + 0.5, H - 0.5 - v))
    w_ang = np.clip((cosang - 0.1) / 0.9, 0, 1) ** 1.5
    w = (visible * w_ang * _smoothstep(d_sil / d0_sil) * _smoothstep(d_jump / d0_jump)
         * _smoothstep(d_border / d0_sil)).astype(np.float32)

    lin = to_linear(img)
    mapx = at.grid(u.astype(np.float32), fill=-10.0)
    mapy = at.grid(v.astype(np.float32), fill=-10.0)
    color = cv2.remap(lin, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    o = _View()
    o.image, o.H, o.W, o.ras, o.occ = img, H, W, ras, occ
    o.V, o.xy, o.weight_t, o.nv = V, xy, w, nv
    o.weight = at.grid(w)
    o.color = color
    return o


def _smooth_ratio(a: np.ndarray, b: np.ndarray, where: np.ndarray, factor: int = 16) -> np.ndarray:
    """Low-frequency a / b, measured on `where` and extended smoothly to the whole grid
    (computed at 1/factor resolution: masked averages, push-pull, blur, upsample)."""
    H, W = where.shape
    small = (max(W // factor, 1), max(H // factor, 1))
    k = where.astype(np.float32)
    ks = cv2.resize(k, small, interpolation=cv2.INTER_AREA)
    sa = cv2.resize(a * k[..., None], small, interpolation=cv2.INTER_AREA)
    sb = cv2.resize(b * k[..., None], small, interpolation=cv2.INTER_AREA)
    lr = np.log(np.maximum(sa, 1e-4)) - np.log(np.maximum(sb, 1e-4))
    lr = np.where(ks[..., None] > 1e-3, lr, 0).astype(np.float32)
    lr = push_pull(lr, np.clip(ks * 4, 0, 1) * (ks > 1e-3))
    lr = cv2.GaussianBlur(np.clip(lr, -1.5, 1.5), (0, 0), 2.0)
    return np.exp(cv2.resize(lr, (W, H), interpolation=cv2.INTER_LINEAR))


def _gains(views: list[_View], at: atlas_mod.Atlas, min_w: float = 0.2) -> np.ndarray:
    """Per-view, per-channel exposure gains (log least squares over pairwise overlaps, mean 1)."""
    n = len(views)
    if n < 2:
        return np.ones((n, 3), np.float32)
    rows, rhs, wts = [], [], []
    step = max(1, at.size // 512)  # exposure is a global quantity: a sparse texel grid suffices
    wts_g = [o.weight[::step, ::step] for o in views]
    cols_g = [o.color[::step, ::step] for o in views]
    for i in range(n):
        for j in range(i + 1, n):
            both = (wts_g[i] > min_w) & (wts_g[j] > min_w)
            cnt = int(both.sum())
            if cnt < 200:
                continue
            mi = cols_g[i][both].mean(0)
            mj = cols_g[j][both].mean(0)
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


def _render_view(o: _View, model: FaceModel, at: atlas_mod.Atlas, albedo_lin: np.ndarray,
                 L: np.ndarray | None, gain: np.ndarray):
    """Re-render the textured head into view o; returns (render uint8, face mask)."""
    tris = model.triangles()
    tri_uvs = model.triangle_uvs()
    ras: Raster = o.ras
    hit = ras.tri >= 0
    gt = np.full(ras.tri.shape, -1, np.int64)
    gt[hit] = o.occ[ras.tri[hit]]
    face_tris = atlas_mod.tri_part_mask(model, ("face",))
    mask = hit & face_tris[np.maximum(gt, 0)]
    ys, xs = np.nonzero(mask)
    t = gt[ys, xs]
    b = ras.bary[ys, xs]
    uv = (model.uv[tri_uvs[t]] * b[..., None]).sum(1)
    S = at.size
    mx = (uv[:, 0] * S - 0.5).astype(np.float32)
    my = ((1 - uv[:, 1]) * S - 0.5).astype(np.float32)
    col = sample_points(albedo_lin, mx, my)
    if L is not None:
        nv = vertex_normals(o.V, tris[atlas_mod.tri_part_mask(model, atlas_mod.SKIN_PARTS)])
        n = (nv[tris[t]] * b[..., None]).sum(1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        col = col * shading_clipped(n, L)
    else:
        col = col / gain
    render = o.image.copy()
    render[ys, xs] = to_srgb(col)
    # two pixels in from the silhouette: edge pixels mix face and background in the photo
    mask_e = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    return render, mask_e


def bake_textures(model: FaceModel, identity: np.ndarray, views: list[dict], size: int = 2048, device="cpu",
                  delight: bool = True, detail: bool = True, metrics: bool = True) -> dict:
    """Bake albedo (and detail normal map) from fitted views. See module docstring.

    Returns {albedo: uint8 (size, 2*size, 3), normal: uint8 (size, 2*size, 3) | None,
    lighting: [ (9, 3) lists ] | None, metrics: [{psnr_db, ssim, mask_pixels}], timings_s,
    layout: {...}, coverage: fraction of skin texels seen, renders: [uint8 images]}.
    """
    if not views:
        raise ValueError("bake_textures needs at least one view")
    size = int(size)
    if size < 64:
        raise ValueError(f"texture size {size} is too small (minimum 64)")
    T = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    at = atlas_mod.get_atlas(model, size)
    occ = np.nonzero(atlas_mod.tri_part_mask(model, atlas_mod.OCCLUDER_PARTS))[0]
    skin_tris = np.nonzero(atlas_mod.tri_part_mask(model, atlas_mod.SKIN_PARTS))[0]
    T["atlas"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # views are independent and the heavy numpy / OpenCV / torch calls release the GIL
    workers = max(1, min(len(views), os.cpu_count() or 1, 4))
    if workers > 1 and str(device) == "cpu":
        with ThreadPoolExecutor(workers) as pool:
            obs = list(pool.map(lambda v: _observe(model, at, identity, v, occ, skin_tris, device), views))
    else:
        obs = [_observe(model, at, identity, v, occ, skin_tris, device) for v in views]
    T["project_sample"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lights = []
    face_t = at.part == 0
    rng = np.random.default_rng(0)
    for o in obs:
        if not delight:
            lights.append(None)
            continue
        cand = np.flatnonzero(face_t & (o.weight_t > 0.3))
        if len(cand) < 200:  # too little face seen to say anything about the light
            cand = np.flatnonzero(o.weight_t > 0)
        pick = np.sort(rng.choice(cand, min(60000, len(cand)), replace=False))
        n = at.interpolate_at(o.nv, pick)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        col = o.color.reshape(-1, 3)[at.texel[pick]]
        L = estimate_lighting(n, col, o.weight_t[pick])
        # Divide out grey shading only: per-channel SH is noisy where the normals are
        # poor and would paint colour fringes; the light's colour stays in the albedo.
        L = L @ _LUMA
        L = np.repeat(L[:, None], 3, 1)
        # normalise so the mean shading over the seen face is 1: the albedo keeps the
        # photo's overall brightness, only the shading variation goes
        L = L / max(float(shading(n, L).mean()), 1e-4)
        s_t = at.interpolate(shading_clipped(o.nv, L), model)
        o.color /= at.grid(s_t, fill=1.0)
        lights.append(L)
    T["delight"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gains = _gains(obs, at)
    colors = [o.color * g for o, g in zip(obs, gains)]
    weights = [o.weight for o in obs]
    levels = max(3, int(np.log2(size)) - 4)
    blended, wsum = multiband_blend(colors, weights, levels=levels, sharpness=BLEND_SHARPNESS)
    seen = np.clip(wsum, 0, 1)
    T["blend"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    skin = at.skin
    # Confidence-weighted completion. Each texel mixes, by confidence: the blended
    # views (conf), the mirror image of the face (where this side was seen poorly but the
    # other side well), and a smooth push-pull skin fill for the rest. The mirrored
    # texture is first given the low-frequency colour ratio between the two sides, so
    # the join is seamless even when the two sides were lit differently.
    conf = _smoothstep((seen - MIN_SEEN) / (FULL_SEEN - MIN_SEEN)) * skin
    m_col = atlas_mod.mirror(blended, size)
    m_conf = atlas_mod.mirror(conf, size) * skin
    c_mirror = (1 - conf) * m_conf
    both = (conf > 0.5) & (m_conf > 0.5)
    if c_mirror.max() > 0 and both.sum() > 100:
        m_col = m_col * _smooth_ratio(blended, m_col, both)
    known_w = conf + c_mirror
    partial = (conf[..., None] * blended + c_mirror[..., None] * m_col) / np.maximum(known_w, 1e-6)[..., None]
    known_mask = known_w > 0.5
    # smooth skin fill from what was seen, fading to the median face colour far away
    face_seen = at.face & (conf > 0.9)
    skin_col = np.median(blended[face_seen], 0) if face_seen.sum() > 100 else np.array([0.45, 0.3, 0.25])
    filled = fill_holes(partial, known_mask)
    dist = cv2.distanceTransform(np.where(known_mask, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    a = _smoothstep(dist / (0.08 * size))[..., None]
    filled = filled * (1 - a) + skin_col * a
    kw = np.clip(known_w, 0, 1)[..., None]
    albedo = (partial * kw + filled * (1 - kw)).astype(np.float32)
    # flat islands, then pad every island outward so mip-mapping never sees black
    flat_any = np.zeros_like(skin)
    for p, m in at.flat.items():
        c = FLAT_SRGB.get(p)
        albedo[m] = to_linear(np.array(c, np.uint8)) if c is not None else skin_col * 0.55
        flat_any |= m
    albedo = fill_holes(albedo, skin | flat_any)
    np.clip(albedo, 0, 1, out=albedo)
    T["fill"] = time.perf_counter() - t0

    normal = None
    detail_stats = None
    if detail:
        t0 = time.perf_counter()
        normal, detail_stats = detail_normal_map(albedo, seen, at.face, size)
        T["detail"] = time.perf_counter() - t0

    albedo_u8 = to_srgb(albedo)
    out_metrics, renders = [], []
    if metrics:
        t0 = time.perf_counter()
        for o, L, g in zip(obs, lights, gains):
            Lg = None if L is None else L / g[None, :]
            render, mask = _render_view(o, model, at, albedo, Lg, g)
            out_metrics.append({"psnr_db": round(psnr(o.image, render, mask), 3),
                                "ssim": round(masked_ssim(o.image, render, mask), 4),
                                "mask_pixels": int(mask.sum())})
            renders.append(render)
        T["metrics"] = time.perf_counter() - t0
    T["total"] = time.perf_counter() - t_all

    return {
        "albedo": albedo_u8,
        "normal": normal,
        # linear radiance ~ albedo_linear * Y(n_model) @ L, per view; the exposure gain is folded in
        "lighting": None if not delight else [(L / g[None, :]).round(5).tolist() for L, g in zip(lights, gains)],
        "lighting_basis": SH_ORDER,
        "gains": gains.round(4).tolist(),
        "metrics": out_metrics,
        "renders": renders,
        "coverage": float((seen[skin] > MIN_SEEN).mean()),
        "detail": detail_stats,
        "timings_s": {k: round(v, 3) for k, v in T.items()},
        "layout": {"width": 2 * size, "height": size, "u_range": [0.0, 2.0], "v_range": [0.0, 1.0],
                   "note": "image covers UDIM tiles 1001 and 1002 side by side; sample at (u/2, v)"},
        "albedo_linear": albedo,
        "seen": seen,  # summed view confidence per texel; >= FULL_SEEN means "from the photos only"
    }
