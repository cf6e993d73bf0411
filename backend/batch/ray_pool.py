"""The same items as Ray tasks, on an existing cluster (`--ray auto` or an address) or on a private
one-machine Ray instance (`--ray local`).

Every node must see the inputs and DIR at the same paths (shared storage) and have this checkout and its
virtual environment at the same path as the driver: the workers import `backend` from there
(PYTHONPATH) and write the bundles themselves. Where the cluster has GPUs each task asks for one
(num_gpus=1), so there is one worker per GPU and `device auto` picks it; a task also declares the memory
budget of a worker, so Ray never packs more of them onto a node than its memory holds.
"""
from __future__ import annotations

import os

from ..contract import backend_env
from ..errors import InputError, SetupError
from ..paths import REPO_ROOT
from .worker import run_item


def _check_reachable(address: str) -> None:
    """ray.init retries an address nobody listens on for ever (30 s per attempt, no end): ask first."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError("expected auto, local, HOST:PORT or ray://HOST:PORT", f"--ray {address}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise InputError(f"cannot reach a Ray cluster there ({e.strerror or e})", f"--ray {address}") from None


def _ray():
    try:
        import ray
    except ImportError as e:
        raise SetupError(f"--ray needs the ray package ({e}); install it with "
                         "`.venv/bin/python -m pip install -r requirements-ray.txt`") from None
    return ray


class RayPool:
    kind = "ray"

    def __init__(self, address: str, memory_per_worker_gb: float, threads: int | None = None,
                 local_cpus: int | None = None):
        ray = self.ray = _ray()
        self.started_here = False
        if not ray.is_initialized():
            if address not in ("auto", "local"):
                _check_reachable(address)
            env = {"env_vars": {"PYTHONPATH": backend_env(REPO_ROOT, {})["PYTHONPATH"], "GLOG_minloglevel": "2"}}
            kw = dict(runtime_env=env, log_to_driver=False, include_dashboard=False)
            try:
                if address == "local":  # "local" even if a cluster runs here (or a crashed one left its address)
                    ray.init(address="local", num_cpus=local_cpus, **kw)
                else:
                    ray.init(address=address, **kw)
            except (ConnectionError, ValueError, RuntimeError) as e:
                # Ray 2.60 turns token authentication on for `ray start` clusters but leaves it off in a
                # driver that connects by address, which then fails as "cannot connect" (checked here)
                hint = ("; if the cluster uses token authentication (Ray's default for `ray start` since 2.59), "
                        "run with RAY_AUTH_MODE=token" if address != "local" and not os.environ.get("RAY_AUTH_MODE")
                        else "")
                raise InputError(f"cannot connect to the Ray cluster ({' '.join(str(e).split())[:300]}){hint}",
                                 f"--ray {address}") from None
            self.started_here = True
        res = ray.cluster_resources()
        self.gpus = int(res.get("GPU", 0))
        self.cpus = int(res.get("CPU", 0))
        self.threads = max(1, int(threads or 1))
        memory = int(memory_per_worker_gb * 1024 ** 3)
        # a task asking for more memory than any node has would wait forever: ask for the largest node's
        node_memory = [n.get("Resources", {}).get("memory", 0) for n in ray.nodes() if n.get("Alive")]
        if node_memory and memory > max(node_memory):
            memory = int(max(node_memory))
        opts = {"num_cpus": self.threads, "memory": memory,
                "max_retries": 0}  # an item that killed its worker (OOM) is reported, not retried blindly
        if self.gpus:
            opts["num_gpus"] = 1
        self.workers = self.gpus or max(1, self.cpus // self.threads)
        self._remote = ray.remote(run_item).options(**opts)
        self._refs: dict = {}

    def submit(self, task: dict) -> None:
        self._refs[self._remote.remote({**task, "threads": self.threads})] = task

    def results(self):
        ray = self.ray
        while self._refs:
            done, _ = ray.wait(list(self._refs), num_returns=1)
            for ref in done:
                task = self._refs.pop(ref)
                try:
                    rec = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - the task's worker died, or Ray lost the node
                    rec = {"subject": task["item"].subject, "status": "failed", "action": task["action"],
                           "error": f"Ray task failed ({type(e).__name__}: {' '.join(str(e).split())[:300]})",
                           "error_code": "worker", "seconds": None, "timings_s": None, "peak_rss_mib": None}
                yield task, rec

    def cancel(self) -> None:
        """Queued tasks are dropped; running ones get KeyboardInterrupt (the bundle writer cleans up)."""
        refs = list(self._refs)
        for ref in refs:
            try:
                self.ray.cancel(ref)
            except Exception:  # noqa: BLE001 - already finished
                pass
        try:
            self.ray.wait(refs, num_returns=len(refs), timeout=10)
        except Exception:  # noqa: BLE001
            pass
        self.close()

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()
