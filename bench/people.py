"""People clustering (rvs.core.clustering) at 10k and 100k units on this CPU: seconds and peak memory
of cluster(), and of update() with 1k new units against the 100k clustered; the baseline, in the same
run, is scikit-learn's own DBSCAN on the raw vectors (metric="cosine", the same bar and min_samples).

Synthetic units: identities as random unit centres in 128 dimensions, 10 faces each (centre plus
noise; two faces of one identity are ~0.75 similar, as real faces are under sface), with sface's
default rules. Each measurement runs in a fresh process, so its peak RSS (VmHWM) is its own.

    uv run --group bench python bench/people.py [--sizes 10000,100000] [--baseline-max 100000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Callable

import numpy as np

from rvs.core import clustering

from common import peak_rss_mib, save

DIM = 128
FACES_PER_IDENTITY = 10
NOISE = 0.051  # per dimension: 1 / (1 + 128 * NOISE**2) = 0.75, the similarity of two faces of one identity
NEW_UNITS = 1000
RULES = clustering.rules_for(0.54)  # sface's threshold


def faces(identities: int, per_identity: int, seed: int, centres: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if centres is None:
        centres = _unit(rng.standard_normal((identities, DIM)))
    points = np.repeat(centres[:identities], per_identity, axis=0)
    return _unit(points + NOISE * rng.standard_normal(points.shape)).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def centres(identities: int) -> np.ndarray:
    return _unit(np.random.default_rng(0).standard_normal((identities, DIM)))


def units(vectors: np.ndarray, prefix: str) -> list[clustering.Unit]:
    return [clustering.Unit(f"{prefix}{i:07d}", v) for i, v in enumerate(vectors)]


def run_cluster(n: int) -> dict[str, object]:
    us = units(faces(n // FACES_PER_IDENTITY, FACES_PER_IDENTITY, 1, centres(n // FACES_PER_IDENTITY)), "u")
    started = time.perf_counter()
    result = clustering.cluster(us, RULES)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "people": len(result.formed), "loose": len(result.loose)}


def run_update(n: int) -> dict[str, object]:
    """1k new units against n clustered: half new faces of known identities, half of strangers."""
    identities = n // FACES_PER_IDENTITY
    known = centres(identities)
    old = units(faces(identities, FACES_PER_IDENTITY, 1, known), "u")
    start = clustering.cluster(old, RULES)
    by_key = {u.key: u for u in old}
    people = {f"p{i}": [by_key[k] for k in keys] for i, keys in enumerate(start.formed)}
    strangers = _unit(np.random.default_rng(3).standard_normal((NEW_UNITS // 2, DIM)))
    new_vectors = np.concatenate([faces(NEW_UNITS // 2, 1, 2, known), faces(NEW_UNITS // 2, 1, 4, strangers)])
    new = units(new_vectors, "n")
    loose = [by_key[k] for k in start.loose]
    started = time.perf_counter()
    step = clustering.update(people, loose, new, RULES)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "members": sum(map(len, people.values())),
        "joined": len(step.joined),
        "loose": len(step.loose),
    }


def run_sklearn(n: int) -> dict[str, object]:
    from sklearn.cluster import DBSCAN

    vectors = faces(n // FACES_PER_IDENTITY, FACES_PER_IDENTITY, 1, centres(n // FACES_PER_IDENTITY))
    started = time.perf_counter()
    labels = DBSCAN(eps=1 - RULES.min_score, min_samples=RULES.min_faces, metric="cosine").fit_predict(vectors)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "people": int(labels.max() + 1), "loose": int(np.sum(labels < 0))}


def _child(job: Callable[[int], dict[str, object]], n: int, out: multiprocessing.Queue) -> None:
    result = job(n)
    out.put({**result, "peak_rss_mib": round(peak_rss_mib(os.getpid()), 1)})


def measure(job: Callable[[int], dict[str, object]], n: int) -> dict[str, object]:
    """The job in a fresh process (its own peak RSS; the setup is in it too, noted in the figures)."""
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(job, n, out))
    child.start()
    result: dict[str, object] = out.get()
    child.join()
    return {"units": n, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--baseline-max", type=int, default=100000, help="largest size for sklearn's DBSCAN")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    figures: dict[str, list[dict[str, object]]] = {"cluster": [], "update_1k": [], "sklearn_dbscan": []}
    for n in sizes:
        for name, job in (("cluster", run_cluster), ("update_1k", run_update), ("sklearn_dbscan", run_sklearn)):
            if name == "sklearn_dbscan" and n > args.baseline_max:
                continue
            row = measure(job, n)
            figures[name].append(row)
            print(f"{name:15s} {n:>7d} units: {row['seconds']:7.2f} s, peak RSS {row['peak_rss_mib']:7.1f} MiB  {row}")
    path = save(
        "people",
        {
            "rules": {"min_score": RULES.min_score, "min_faces": RULES.min_faces, "join_members": RULES.join_members},
            "data": {"dim": DIM, "faces_per_identity": FACES_PER_IDENTITY, "noise": NOISE, "new_units": NEW_UNITS},
            "note": "peak RSS includes making the synthetic vectors (and, for update, clustering the existing units)",
            **figures,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
