"""A seeded, deterministic fault sweep over the public entry points, both directions.

ONNX -> JAX: valid small models (node-suite cases built by the onnx wheel, the test suite's own
models, graphs with If/Loop/Scan bodies) are mutated (tests/support/fault_mutations.py) and each
mutant goes through one door (``wb.to_jax`` and a run, ``Backend.prepare(...).run``, the
``workbench to-jax`` command line). JAX -> ONNX: seed callables are called through ``wb.to_onnx``,
the ``%%to_onnx`` magic and ``workbench export`` with mutated specs, keyword arguments and
callables (tests/support/fault_jax_cases.py). The oracle is tests/support/fault_oracle.py.

Cases run in a worker process under an address-space limit, one at a time with a time limit; a
worker that hangs or dies is replaced and the case counted as ``hang``/``crash``. Prints a table of
clean / unclean cases by door and mutation kind, then one line per unclean case::

    python -m tests.hardening.fault_sweep --cases 3 --seed 0            # the full sweep
    python -m tests.hardening.fault_sweep --quick                       # the CI slice
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.support.fault_jax_cases import JAX_KINDS, SEEDS, JaxCase, jax_cases
from tests.support.fault_mutations import MUTATIONS, mutants
from tests.support.fault_oracle import UNCLEAN, OnnxCase, Outcome

MEMORY_LIMIT = 12 << 30  # address space of the worker (JAX reserves a few GiB of it up front)
BYTE_KINDS = ("bytes_flipped", "bytes_truncated")
NODE_SUITE_OPS = ("Conv", "Softmax", "Transpose", "Gather", "Slice", "Reshape", "Concat", "MaxPool", "Pad", "ReduceSum",
                  "Split", "Gemm", "LayerNormalization", "Where", "Cast", "TopK", "Resize", "Expand", "Range", "Einsum",
                  "If", "Loop", "Scan", "BatchNormalization", "Unsqueeze", "ConvTranspose", "GRU", "CumSum", "OneHot")  # fmt: skip


# ------------------------------------------------------------------------------ ONNX seeds
@dataclass(frozen=True)
class Seed:
    name: str
    model: onnx.ModelProto
    inputs: list[np.ndarray] | None  # known-good inputs (node-suite data), else generated per mutant
    int_steps: int = 0  # integer outputs may differ from onnxruntime's by this many steps (quantized contrib ops)


def _scan_model() -> onnx.ModelProto:
    """A running sum over the rows of x[3, 2] with Scan (opset 17)."""
    vi = helper.make_tensor_value_info
    body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "row"], ["sum_out"], name="accumulate"),
         helper.make_node("Identity", ["sum_out"], ["scan_out"], name="emit")],
        "scan_body", [vi("sum_in", TensorProto.FLOAT, [2]), vi("row", TensorProto.FLOAT, [2])],
        [vi("sum_out", TensorProto.FLOAT, [2]), vi("scan_out", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("Scan", ["init", "x"], ["total", "rows"], name="scan", num_scan_inputs=1, body=body)],
        "scanned", [vi("x", TensorProto.FLOAT, [3, 2])],
        [vi("total", TensorProto.FLOAT, [2]), vi("rows", TensorProto.FLOAT, [3, 2])],
        [numpy_helper.from_array(np.zeros(2, np.float32), "init")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def local_seeds() -> list[Seed]:
    """The test suite's own small models and a Scan graph (fast to build: the CI slice uses these)."""
    from tests.support import codegen_models, web_models

    return [
        Seed("codegen.mlp", codegen_models.mlp(), None),
        Seed("codegen.cnn", codegen_models.cnn(), None),
        Seed("codegen.if_and_loop", codegen_models.if_and_loop(), None),
        Seed("web.tiny_gpt", web_models.tiny_gpt(), None),
        Seed("scan", _scan_model(), None),
    ]


def node_suite_seeds(ops: tuple[str, ...] = NODE_SUITE_OPS) -> list[Seed]:
    """The first node-suite case of each op (built by the onnx wheel itself: tens of seconds once)."""
    from workbench.onnx_to_jax.node_suite import cases_by_op

    seeds = []
    by_op = cases_by_op()
    for op in ops:
        for case in by_op.get(("", op), ())[:1]:
            if any(seed.name == f"node.{case.name}" for seed in seeds):
                continue  # the first case of several ops (an expanded function graph holding them all)
            inputs = list(case.data_sets[0][0]) if case.data_sets else None
            if inputs is not None and not all(isinstance(x, np.ndarray) for x in inputs):
                inputs = None  # sequences and optionals: generated inputs are not meaningful
            seeds.append(Seed(f"node.{case.name}", case.model, inputs))
    return seeds


def user_model_seeds(groups: tuple[str, ...] | None = None) -> list[Seed]:
    """Models users bring (tests/support/fault_user_seeds.py): contrib ops, ML converters, Optimum's If, exports."""
    from tests.support.fault_user_seeds import BUILDERS, user_seeds

    return [Seed(s.name, s.model, s.inputs, s.int_steps) for s in user_seeds(groups or tuple(BUILDERS))]


def _inputs_for(model: onnx.ModelProto, seed: Seed, rng: np.random.Generator) -> list[np.ndarray] | None:
    """Inputs matching the mutant's declared graph inputs: the seed's where they still fit, else random."""
    initializers = {t.name for t in model.graph.initializer}
    declared = [v for v in model.graph.input if v.name not in initializers]
    known = {v.name: x for v, x in zip(seed.model.graph.input, seed.inputs or [])}
    inputs = []
    for value in declared:
        if not value.type.HasField("tensor_type"):
            return None
        tensor = value.type.tensor_type
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        except (KeyError, ValueError):
            return None
        shape = [d.dim_value if d.HasField("dim_value") else 2 for d in tensor.shape.dim]
        if not tensor.HasField("shape"):
            shape = list(np.shape(known.get(value.name, np.zeros(2))))
        if any(d > 4096 for d in shape) or int(np.prod(shape)) > 1 << 20:
            return None
        given = known.get(value.name)
        if given is not None and given.dtype == dtype and list(given.shape) == shape:
            inputs.append(given)
        elif dtype.kind == "f":
            inputs.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind in "iu":
            inputs.append(rng.integers(0, 2, shape).astype(dtype))
        elif dtype.kind == "b":
            inputs.append(rng.random(shape) < 0.5)
        else:
            return None
    return inputs


def onnx_cases(seeds: list[Seed], per_seed: int, seed: int, kinds: tuple[str, ...] = tuple(MUTATIONS)) -> Iterator[OnnxCase]:
    """``per_seed`` mutants of each kind for each seed, each sent through one door (in turn)."""
    for seed_index, model_seed in enumerate(seeds):
        for kind_index, kind in enumerate(kinds):
            rng_seed = seed * 1_000_003 + seed_index * 101 + kind_index
            rng = np.random.default_rng(rng_seed)
            doors = ("to_jax", "cli") if kind in BYTE_KINDS else ("to_jax", "backend", "cli")
            for number, mutant in enumerate(mutants(model_seed.model, kind, rng_seed, per_seed)):
                as_bytes = isinstance(mutant.model, bytes)
                payload = mutant.model if as_bytes else mutant.model.SerializeToString()
                if as_bytes:
                    inputs = _inputs_for(model_seed.model, model_seed, rng)
                else:
                    inputs = _inputs_for(mutant.model, model_seed, rng)
                door = doors[(number + seed_index) % len(doors)]
                yield OnnxCase(door, kind, model_seed.name, number, payload, as_bytes, inputs, mutant.targets, mutant.what,
                               model_seed.int_steps)


def all_jax_cases(per_seed: int, seed: int, kinds: tuple[str, ...] = JAX_KINDS) -> Iterator[JaxCase]:
    for seed_index, name in enumerate(SEEDS):
        for kind_index, kind in enumerate(kinds):
            yield from jax_cases(name, kind, seed * 1_000_003 + seed_index * 101 + kind_index, per_seed)


def program_cases(seed: int = 0) -> list[JaxCase]:
    """One case per real-program mistake (tests/support/fault_jax_programs.py); ``seed`` only numbers them."""
    from tests.support.fault_jax_programs import MISTAKES, PROGRAM_KIND

    return [JaxCase("to_onnx", PROGRAM_KIND, name, seed, [], targets=(), what=(MISTAKES[name].__doc__ or "").splitlines()[0])
            for name in MISTAKES]


# ------------------------------------------------------------------------------ the worker
def _serve(connection: Connection, memory_limit: int) -> None:
    """Worker loop: run each case sent, answer its Outcome; ``None`` ends the loop."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    from tests.support.fault_oracle import run_jax_case, run_onnx_case

    started_in = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="fault_sweep_") as folder:
        os.chdir(folder)  # a relative --out path of a case lands there, not in the caller's folder
        try:
            while True:
                case = connection.recv()
                if case is None:
                    return
                try:
                    outcome = run_onnx_case(case) if isinstance(case, OnnxCase) else run_jax_case(case)
                except MemoryError:
                    outcome = Outcome("memory", "MemoryError outside the door")
                connection.send(outcome)
        finally:
            os.chdir(started_in)  # IPython's exit handler reads the working folder


class Worker:
    """One worker process; replaced after a hang or a crash."""

    def __init__(self, memory_limit: int = MEMORY_LIMIT) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._memory_limit = memory_limit
        self._start()

    def _start(self) -> None:
        self._connection, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child, self._memory_limit), daemon=True)
        self._process.start()

    def run(self, case: Any, timeout: float) -> Outcome:
        self._connection.send(case)
        if self._connection.poll(timeout):
            try:
                return self._connection.recv()
            except EOFError:
                pass
            self._process.join(5)
            outcome = Outcome("crash", f"worker died (exit code {self._process.exitcode})")
        else:
            outcome = Outcome("hang", f"no answer in {timeout:.0f} s")
        self._process.kill()
        self._process.join()
        self._start()
        return outcome

    def close(self) -> None:
        self._connection.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


@dataclass(frozen=True)
class Result:
    door: str
    kind: str
    seed: str
    number: int
    what: str
    outcome: Outcome


def sweep(cases: list[Any], *, timeout: float = 60.0, worker: Worker | None = None) -> list[Result]:
    """Run every case in the worker (one is started when not given) and return the results in order."""
    own = worker is None
    worker = worker or Worker()
    try:
        return [Result(c.door, c.kind, c.seed, c.number, c.what, worker.run(c, timeout)) for c in cases]
    finally:
        if own:
            worker.close()


def table(results: list[Result]) -> str:
    """Clean / unclean counts by door and kind, then one line per unclean case."""
    counts: Counter[tuple[str, str, str]] = Counter((r.door, r.kind, r.outcome.status) for r in results)
    rows = sorted({(door, kind) for door, kind, _ in counts})
    header = f"{'door':<11} {'kind':<20} {'cases':>5} {'clean':>5} " + " ".join(f"{s:>8}" for s in UNCLEAN)
    lines = [header, "-" * len(header)]
    for door, kind in rows:
        total = sum(n for (d, k, _), n in counts.items() if (d, k) == (door, kind))
        cells = " ".join(f"{counts[(door, kind, s)] or '':>8}" for s in UNCLEAN)
        lines.append(f"{door:<11} {kind:<20} {total:>5} {counts[(door, kind, 'clean')]:>5} {cells}")
    unclean = [r for r in results if r.outcome.status != "clean"]
    lines.append(f"{len(results)} cases, {len(unclean)} unclean")
    lines += [f"  {r.outcome.status:<8} {r.door}/{r.kind} {r.seed}#{r.number} ({r.what}): {r.outcome.detail}" for r in unclean]
    return "\n".join(lines)


def quick_cases(seed: int = 0) -> list[Any]:
    """The CI slice: one mutant of every ONNX kind of three local seeds, one of every JAX kind of one seed, and the
    real-program mistakes of pytree structure (STRUCTURE_MISTAKES)."""
    seeds = [s for s in local_seeds() if s.name in ("codegen.mlp", "codegen.if_and_loop", "scan")]
    jax = [c for c in all_jax_cases(1, seed) if c.seed == "dense"]
    from tests.support.fault_jax_programs import STRUCTURE_MISTAKES

    structure = [c for c in program_cases(seed) if c.seed in {f.__name__ for f in STRUCTURE_MISTAKES}]
    return [*onnx_cases(seeds, 1, seed), *jax, *structure]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="mutants per seed and kind (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="only the CI slice")
    parser.add_argument("--door", choices=("onnx", "jax", "both"), default="both")
    parser.add_argument("--no-node-suite", action="store_true", help="ONNX seeds: only the suite's own models")
    parser.add_argument("--users", metavar="GROUPS", help="ONNX seeds: only models users bring (comma-separated groups of "
                        "tests/support/fault_user_seeds.py, or 'all'); JAX: the real-program mistakes")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--only", metavar="DOOR/KIND/SEED#N", help="run the one case a table line names")
    parser.add_argument("--save", metavar="FILE", help="with --only on an ONNX case: write its mutant there")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.quick:
        cases = quick_cases(args.seed)
    else:
        cases = []
        if args.door in ("onnx", "both"):
            if args.users:
                seeds = user_model_seeds(None if args.users == "all" else tuple(args.users.split(",")))
            else:
                seeds = local_seeds() + ([] if args.no_node_suite else node_suite_seeds())
            cases += list(onnx_cases(seeds, args.cases, args.seed))
        if args.door in ("jax", "both"):
            cases += program_cases(args.seed) if args.users else list(all_jax_cases(args.cases, args.seed))
    if args.only:
        cases = [c for c in cases if f"{c.door}/{c.kind}/{c.seed}#{c.number}" == args.only]
        if args.save and cases and isinstance(cases[0], OnnxCase):
            with open(args.save, "wb") as handle:
                handle.write(cases[0].payload)
    print(f"{len(cases)} cases built in {time.perf_counter() - start:.1f} s", flush=True)
    results = sweep(cases, timeout=args.timeout)
    print(table(results))
    print(f"wall {time.perf_counter() - start:.1f} s")
    return 1 if any(r.outcome.status != "clean" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
