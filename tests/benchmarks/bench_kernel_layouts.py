"""CPU time of laying out a Haiku ResNet-18's 21 convolution kernels HWIO -> OIHW (44.7 MB of float32).

A script, not a test: it prints one line per form, medians and minima of process CPU ms over interleaved
rounds, on one copy thread (``WORKBENCH_COPY_THREADS=1``, set here): ``transposed_copy`` of the tree on
``PYTHONPATH``, of each tree given with ``--tree`` (e.g. a worktree at the commit before a change), a
plain copy of the same bytes and NumPy's own transposed copy. Every form's output is checked equal to
NumPy's transpose first.

    PYTHONPATH=$PWD python tests/benchmarks/bench_kernel_layouts.py [--rounds 11] [--tree /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

os.environ["WORKBENCH_COPY_THREADS"] = "1"

from workbench.jax_to_onnx.ir_values import transposed_copy  # noqa: E402 - after the thread setting

# hk.nets.ResNet18's kernels (stem, four stages of 3x3 convolutions, three 1x1 projections), HWIO
KERNELS = ([(7, 7, 3, 64)] + [(3, 3, 64, 64)] * 4
           + [(3, 3, 64, 128)] + [(3, 3, 128, 128)] * 3 + [(1, 1, 64, 128)]
           + [(3, 3, 128, 256)] + [(3, 3, 256, 256)] * 3 + [(1, 1, 128, 256)]
           + [(3, 3, 256, 512)] + [(3, 3, 512, 512)] * 3 + [(1, 1, 256, 512)])
PERM = (3, 2, 0, 1)


def _tree_copy(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``transposed_copy`` of the checkout at ``path`` (its ir_values module loaded under another name)."""
    spec = importlib.util.spec_from_file_location(f"ir_values_{abs(hash(path))}",
                                                  os.path.join(path, "workbench/jax_to_onnx/ir_values.py"))
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no workbench/jax_to_onnx/ir_values.py under {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda array: module.transposed_copy(array, PERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--tree", action="append", default=[], help="another checkout whose transposed_copy to time")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    kernels = [rng.standard_normal(shape, dtype=np.float32) for shape in KERNELS]
    forms: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "plain copy": np.copy,
        "numpy transposed copy": lambda array: np.ascontiguousarray(np.transpose(array, PERM)),
        "transposed_copy (PYTHONPATH)": lambda array: transposed_copy(array, PERM),
    }
    forms.update({f"transposed_copy ({path})": _tree_copy(path) for path in args.tree})
    for name, form in forms.items():
        if name != "plain copy" and not all(np.array_equal(form(k), np.transpose(k, PERM)) for k in kernels):
            raise AssertionError(f"{name}: not NumPy's transpose")
    seconds: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.rounds):
        for name, form in forms.items():
            start = time.process_time()
            outputs = [form(kernel) for kernel in kernels]
            seconds[name].append(time.process_time() - start)
            del outputs
    print(f"{sum(k.nbytes for k in kernels) / 1e6:.1f} MB, {args.rounds} rounds, one thread")
    for name, values in seconds.items():
        print(f"{name}: CPU median {statistics.median(values) * 1e3:.1f} ms, min {min(values) * 1e3:.1f}")
    print("load average:", " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
