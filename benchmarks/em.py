"""Seconds of the combiner's label-free fit (``Combiner.fit_em``) on real sets, and a digest of
what it learned (equal digests: the same m, u, prior and the rest, bit for bit).

    python benchmarks/em.py                       # cora, abtbuy, sigmod_x2
    python benchmarks/em.py cora --repeat 5       # some sets, each fit timed five times

A run trains its model in process (``dedup.pipeline.run``) and keeps the inputs of each
``fit_em`` call (a run fits twice: the provisional fit and the final one); each fit is then
timed alone on a fresh copy, ``--repeat`` times (printed min-max). Run it on the code before
and after a change to the combiner to compare.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata  # noqa: E402  (the sets and their configs)

from dedup import load_config, run  # noqa: E402
from dedup.combiner import Combiner  # noqa: E402


def captured_fits(name: str, work: Path) -> list[tuple[Combiner, tuple, dict]]:
    """Each ``fit_em`` call of a label-free run on the set: (combiner before, args, kwargs)."""
    data = realdata.load(name)
    source = work / f"{name}.parquet"
    data.table.drop(data.truth_column).write_parquet(source)
    calls: list[tuple[Combiner, tuple, dict]] = []
    fit = Combiner.fit_em

    def keeping(self: Combiner, *args, **kwargs) -> Combiner:
        calls.append((copy.deepcopy(self), args, kwargs))
        return fit(self, *args, **kwargs)

    Combiner.fit_em = keeping
    try:
        run(source, load_config(realdata.CONFIGS / f"{data.config_name}.yaml"), work / f"{name}-out")
    finally:
        Combiner.fit_em = fit
    return calls


def digest(combiner: Combiner) -> str:
    parts = (combiner.m_, combiner.u_, np.float64(combiner.prior_), combiner.interaction_, combiner.tf_scale_)
    parts += (combiner.exact_share_, combiner.noise_, combiner.anchored_)
    h = hashlib.sha256()
    for array in parts:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=["cora", "abtbuy", "sigmod_x2"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'set':11s} {'fit':>3s} {'pairs':>8s} {'random':>8s} {'seconds':>13s}  digest")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            for i, (before, fit_args, fit_kwargs) in enumerate(captured_fits(name, Path(tmp))):
                seconds = []
                for _ in range(args.repeat):
                    combiner = copy.deepcopy(before)
                    start = time.perf_counter()
                    combiner.fit_em(*fit_args, **fit_kwargs)
                    seconds.append(time.perf_counter() - start)
                spread = f"{min(seconds):.3f}-{max(seconds):.3f}"
                sizes = f"{len(fit_args[0]):8,d} {len(fit_args[1]):8,d}"
                print(f"{name:11s} {i:3d} {sizes} {spread:>13s}  {digest(combiner)}", flush=True)


if __name__ == "__main__":
    main()
