"""Many photos of one person: the joint fit and the same-person check stay linear, report progress and honour
cancel; above identity_check.MAX_VIEWS the check runs on views spread over head pose and says so.
tools/measure_many_views.py times a 200-photo job end to end (figures in its docstring)."""
import numpy as np
import pytest

from backend.errors import CancelledError
from backend.fit import identity_check, landmark_spec
from backend.landmarks.base import Detection
from backend.pipeline import View, fit_views
from bench.synthetic import make_scene


def many_views(model, n, seed=5):
    spec = landmark_spec("ibug68", model)
    rng = np.random.default_rng(seed)
    yaws = list(rng.uniform(-50, 50, n))
    scene = make_scene(rng, model, spec, yaws, pitches=list(rng.uniform(-10, 10, n)), noise_px=1.0, size=512)
    return [View(name=f"v{i:03d}", source_path="", width=512, height=512,
                 detection=Detection(points=v["points"], format="ibug68",
                                     box=(*v["points"].min(0), *v["points"].max(0))))
            for i, v in enumerate(scene["views"])]


def test_more_views_than_the_check_takes_use_a_spread_subset_with_progress(model, monkeypatch):
    monkeypatch.setattr(identity_check, "MAX_VIEWS", 12)  # the product's 64, scaled down for the test's time
    views = many_views(model, 20)
    _, spec, res = fit_views(views)
    seen = []
    out = identity_check.identity_warnings(views, model, spec, joint=res, progress=seen.append)
    assert out[0].startswith(f"{len(views)} photos: the same-person check used 12 of them")
    assert len(out) == 1  # one person: nobody flagged
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_the_check_stops_on_cancel(model):
    views = many_views(model, 12)
    _, spec, res = fit_views(views)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError):
        identity_check.identity_warnings(views, model, spec, joint=res, cancel=cancel)
