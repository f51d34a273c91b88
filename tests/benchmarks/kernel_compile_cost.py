"""Which kernels a corpus model's first ``jax.jit`` pays for, and which ONNX nodes make them.

A script, not a test. It compiles the folded form of each model (``wb.jit_forward(forward, params)``
lowered, the model's XLA options) once under JAX's profiler and with XLA's dump
(``xla_dump_to``, passed as a compile option) and prints:

- the compile's CPU seconds and its phases from the profile, in thread wall ms: HLO passes and the
  thunk emission (XLA's compile thread), the kernels' MLIR emission (``FusionCompiler::Compile``, one
  named event per kernel module, on XLA's codegen threads) and LLVM's optimization and code generation
  (``JitCompiler::Compile``, whose tasks on the codegen threads are not named);
- the kernels with the largest optimized LLVM IR (the dump's ``*.ir-with-opt.ll``: what LLVM's code
  generation works through), each with XLA's fusion, its output shape, the fusions that share its
  body (XLA compiles one), the ONNX ops of the nodes whose generated lines it fuses (from the HLO's
  stack frames: lines of ``forward`` or ``forward_prepared`` in the generated source, helpers' lines
  counted as the line that called them) and its MLIR emission ms;
- the same summed by ONNX ops.

IR size ranks kernels, it does not time them: Swin-T's four in-place softmax exponentials were
370 KB each against ~20 KB for most kernels, and removing them saved ~1.1 CPU s of ~8.5, not the
share of the IR they had (docs/onnx_to_jax_corpus.md, "Which kernels cost the compile"). A change's
effect is an A/B of the whole compile. Thread wall times stretch on a loaded machine; compare shares.
``tests/benchmarks/hlo_kernels.py`` counts the distinct kernels by kind::

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/kernel_compile_cost.py \\
        --corpus swin_t,inception_v3 [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import re
import tempfile
import time

from tests.benchmarks.hlo_kernels import signature, computations

_FUSION = re.compile(r"%([\w.\-]+) = (\S+) fusion\(.*calls=%([\w.\-]+)")
_FRAME = re.compile(r"^(\d+) \{file_location_id=(\d+) parent_frame_id=(\d+)\}")
_LOCATION = re.compile(r"^(\d+) \{file_name_id=(\d+) function_name_id=(\d+) line=(\d+)")
_ASSIGNED = re.compile(r"^\s*(\w+)(?:\s*,\s*\w+)*\s*=")


@dataclasses.dataclass
class Kernel:
    """One kernel module XLA compiled: its fusion in the program and what it cost."""

    name: str
    shape: str
    instances: int
    onnx_ops: tuple[str, ...]
    mlir_ms: float
    ir_bytes: int


def _profile_events(trace_dir: str) -> list[tuple[str, float, dict]]:
    """(event name, duration ms, stats) of every event in the trace JAX's profiler wrote to ``trace_dir``."""
    from jax.profiler import ProfileData

    (path,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    events = []
    for plane in ProfileData.from_file(path).planes:
        for line in plane.lines:
            for event in line.events:
                if not event.name.startswith("$"):  # Python frames
                    events.append((event.name, event.duration_ns / 1e6, dict(event.stats)))
    return events


def _frame_lines(hlo: str, source_name: str) -> dict[int, set[int]]:
    """{stack frame id: the lines of the generated source on its call chain} from the HLO text's tables."""
    files = dict(re.findall(r'^(\d+) "([^"]*)"', hlo.split("FunctionNames")[0], re.M))
    generated = {int(k) for k, v in files.items() if v == source_name}
    locations = {}
    frames = {}
    for line in hlo.splitlines():
        loc = _LOCATION.match(line)
        if loc:
            locations[int(loc.group(1))] = (int(loc.group(2)), int(loc.group(4)))
        frame = _FRAME.match(line)
        if frame:  # the text prints a frame's parent id plus one (1 = no parent)
            frames[int(frame.group(1))] = (int(frame.group(2)), int(frame.group(3)) - 1)
    chains: dict[int, set[int]] = {}
    for frame_id in frames:
        lines, current, seen = set(), frame_id, set()
        while current in frames and current not in seen:
            seen.add(current)
            file_id, line_no = locations[frames[current][0]]
            if file_id in generated:
                lines.add(line_no)
            current = frames[current][1]
        chains[frame_id] = lines
    return chains


def _line_ops(source: str, model) -> dict[int, str]:
    """{line number of the generated source: the ONNX op type of the node whose output it assigns}."""
    from workbench.onnx_to_jax.names import sanitize

    by_name = {}
    for node in model.graph.node:
        for output in node.output:
            if output:
                by_name.setdefault(sanitize(output), node.op_type)
    ops = {}
    for number, text in enumerate(source.splitlines(), start=1):
        assigned = _ASSIGNED.match(text)
        if assigned:
            name = assigned.group(1)
            op = by_name.get(name) or by_name.get(re.sub(r"_\d+$", "", name))
            if op:
                ops[number] = op
    return ops


def kernels(hlo: str, source: str, model, mlir: dict[str, float], ir_sizes: dict[str, int]) -> list[Kernel]:
    """The kernel modules of one compile, each with its fusion's shape, instances and ONNX ops."""
    from workbench.onnx_to_jax.generator import GENERATED_FILENAME

    found, entry = computations(hlo)
    chains = _frame_lines(hlo, GENERATED_FILENAME)
    line_ops = _line_ops(source, model)
    by_fusion = {}
    for line in found[entry]:
        call = _FUSION.search(line)
        if call:
            by_fusion[call.group(1)] = (call.group(2), call.group(3))
    signatures = {c: signature(c, found) for _, c in by_fusion.values()}
    bodies = collections.Counter(signatures.values())

    def ops_of(computation: str) -> set[str]:
        ops = set()
        for text in found.get(computation, []):
            for frame in re.findall(r"stack_frame_id=(\d+)", text):
                ops.update(line_ops[n] for n in chains.get(int(frame), ()) if n in line_ops)
            for callee in re.findall(r"(?:calls|to_apply)=%([\w.\-]+)", text):
                ops |= ops_of(callee)
        return ops

    result = []
    for module in sorted(set(mlir) | set(ir_sizes)):
        fusion = re.sub(r"^__compute_module_|_kernel_module$|_elemental_kernel_module$", "", module)
        shape, computation = by_fusion.get(fusion, ("?", ""))
        same = bodies[signatures[computation]] if computation else 1
        result.append(Kernel(module, shape, same, tuple(sorted(ops_of(computation))) if computation else (),
                             mlir.get(module, 0.0), ir_sizes.get(module, 0)))
    return result


def _ir_sizes(dump_dir: str) -> dict[str, int]:
    """{kernel module name: bytes of its optimized LLVM IR} from XLA's dump."""
    sizes = {}
    for path in glob.glob(os.path.join(dump_dir, "*jit_forward*.ir-with-opt.ll")):
        module = re.sub(r"^module_\d+\.jit_\w+?\.(?=[_a-z])", "", os.path.basename(path))
        module = module.removesuffix(".ir-with-opt.ll")
        sizes[module] = os.path.getsize(path)
    return sizes


def model_report(name: str, top: int) -> None:
    """Print the compile phases, the ``top`` costliest kernels and the cost by ONNX op of corpus model ``name``."""
    import jax

    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export
    from workbench.onnx_to_jax.api import generate_module
    from workbench.onnx_to_jax.jit_options import generated_options

    model, feeds = export(name, "legacy")
    generated = generate_module(model)
    params = {k: (jax.device_put(v) if v.dtype.kind in "fc" else v) for k, v in generated.params.items()}
    lowered = wb.jit_forward(generated.forward, params).lower(*feeds)
    with tempfile.TemporaryDirectory() as trace_dir, tempfile.TemporaryDirectory() as dump_dir:
        options = dict(generated_options(generated.forward), xla_dump_to=dump_dir)
        jax.profiler.start_trace(trace_dir)
        cpu = time.process_time()
        compiled = lowered.compile(options)
        cpu = time.process_time() - cpu
        jax.profiler.stop_trace()
        events = _profile_events(trace_dir)
        sizes = _ir_sizes(dump_dir)
    hlo = compiled.as_text()

    totals: collections.Counter[str] = collections.Counter()
    mlir: collections.Counter[str] = collections.Counter()
    for event, ms, stats in events:
        totals[event] += ms
        if event == "FusionCompiler::Compile":
            mlir[str(stats.get("module"))] += ms
    table = kernels(hlo, generated.source, model, dict(mlir), sizes)

    backend = totals["CpuCompiler::RunBackend"]
    print(f"{name}: compile {cpu:.2f} CPU s, {len(table)} kernel modules")
    print(f"  thread wall ms: HLO passes {totals['PjRtCpuClient::Compile'] - backend:.0f}, thunk emission "
          f"{totals['ThunkEmitter::EmitEntryComputation'] + totals['ThunkEmitter::ConsumeKernels']:.0f} "
          f"(the kernels' MLIR emission {sum(mlir.values()):.0f} on the codegen threads), LLVM optimization and "
          f"code generation {totals['JitCompiler::Compile']:.0f} ({totals['TaskDispatcher::dispatch']:.0f} "
          "on the codegen threads)")
    print(f"  {'kernel module':52s} {'shape':26s} {'inst':>4s} {'MLIR ms':>7s} {'IR KB':>6s}  ONNX ops")
    for kernel in sorted(table, key=lambda k: -k.ir_bytes)[:top]:
        print(f"  {kernel.name[:52]:52s} {kernel.shape.split('{')[0][:26]:26s} {kernel.instances:4d} "
              f"{kernel.mlir_ms:7.0f} {kernel.ir_bytes / 1024:6.0f}  {'+'.join(kernel.onnx_ops) or '-'}")
    by_ops: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0, 0.0, 0.0])
    for kernel in table:
        row = by_ops["+".join(kernel.onnx_ops) or "(no generated line)"]
        row[0] += 1
        row[1] += kernel.instances
        row[2] += kernel.mlir_ms
        row[3] += kernel.ir_bytes / 1024
    print(f"  {'ONNX ops of the kernel':52s} {'kernels':>7s} {'inst':>5s} {'MLIR ms':>7s} {'IR KB':>6s}")
    for ops, (count, instances, mlir_ms, ir_kb) in sorted(by_ops.items(), key=lambda r: -r[1][3]):
        print(f"  {ops[:52]:52s} {count:7d} {instances:5d} {mlir_ms:7.0f} {ir_kb:6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="comma-separated vision corpus models")
    parser.add_argument("--top", type=int, default=25, help="kernels to list per model")
    args = parser.parse_args()
    for name in args.corpus.split(","):
        model_report(name, args.top)


if __name__ == "__main__":
    main()
