"""The kernels of a corpus model's compiled XLA program: how many, how many distinct, of which kind.

A script, not a test. XLA CPU generates code once per distinct fused computation (a chain of identical
blocks compiles about as fast as one block), and code generation is most of a large model's first
``jax.jit`` (docs/onnx_to_jax_corpus.md, "Swin-T's kernels by ONNX op"), so the distinct kernels are
what a code form must cut to compile faster. The script compiles the folded form
(``wb.jit_forward(forward, params)``, the model's XLA options), reads the optimized HLO
(``compiled.as_text()``) and groups the fusions the entry computation calls by XLA's name for them
(``transpose_copy_fusion``, ``wrapped_reduce-window``, ``ynn_fusion``...), counting instances and
distinct bodies. Two bodies count as one when they differ only in instruction names, metadata and the
values of constants (``as_text`` elides large constants, so a YNNPACK fusion's weights do not tell
two fusions apart here even where XLA compiles both)::

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/hlo_kernels.py \\
        --corpus swin_t [--dump swin_t.hlo.txt]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import re

_HEADER = re.compile(r"^(ENTRY )?%([\w.\-]+) .*\{\s*$")
_CALL = re.compile(r"%([\w.\-]+) = (\S+) fusion\(.*kind=(\w+), calls=%([\w.\-]+)")


def computations(hlo: str) -> tuple[dict[str, list[str]], str]:
    """{computation name: its instruction lines} of an HLO module's text, and the entry's name."""
    found: dict[str, list[str]] = {}
    entry = current = None
    for line in hlo.splitlines():
        header = _HEADER.match(line)
        if header:
            current = header.group(2)
            found[current] = []
            entry = current if header.group(1) else entry
        elif line.startswith("}"):
            current = None
        elif current is not None:
            found[current].append(line)
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text: pass compiled.as_text() of a jitted function")
    return found, entry


def signature(name: str, found: dict[str, list[str]]) -> str:
    """The body of computation ``name`` and of those it calls, without names, metadata or constants' values."""
    lines = found[name]
    text = "\n".join(
        re.sub(r"%[\w.\-]+", "%", re.sub(r", metadata=\{[^}]*\}", "", line)).strip() for line in lines
    )
    for callee in re.findall(r"(?:calls|to_apply)=%([\w.\-]+)", "\n".join(lines)):
        text += "\n[" + signature(callee, found) + "]"
    return text


def kernel_table(hlo: str) -> list[tuple[str, int, int]]:
    """(XLA's kind of fusion, distinct, instances) for the fusions the entry computation calls, most distinct first."""
    found, entry = computations(hlo)
    distinct: dict[str, set[str]] = collections.defaultdict(set)
    instances: collections.Counter[str] = collections.Counter()
    for line in found[entry]:
        call = _CALL.search(line)
        if call is None:
            continue
        kind = re.sub(r"\.\d+$", "", call.group(1))
        instances[kind] += 1
        distinct[kind].add(hashlib.sha1(signature(call.group(4), found).encode()).hexdigest())
    return sorted(((k, len(distinct[k]), instances[k]) for k in instances), key=lambda row: (-row[1], row[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="comma-separated vision corpus models")
    parser.add_argument("--dump", help="also write the optimized HLO text here (one model)")
    args = parser.parse_args()

    import jax

    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export
    from workbench.onnx_to_jax.api import generate_module

    for name in args.corpus.split(","):
        model, feeds = export(name, "legacy")
        generated = generate_module(model)
        params = {k: (jax.device_put(v) if v.dtype.kind in "fc" else v) for k, v in generated.params.items()}
        hlo = wb.jit_forward(generated.forward, params).lower(*feeds).compile().as_text()
        if args.dump:
            with open(args.dump, "w", encoding="utf-8") as out:
                out.write(hlo)
        table = kernel_table(hlo)
        print(f"{name}: {sum(r[1] for r in table)} distinct kernels of {sum(r[2] for r in table)} fusions")
        for kind, count, total in table:
            print(f"  {kind:40s} {count:4d} distinct {total:5d} instances")


if __name__ == "__main__":
    main()
