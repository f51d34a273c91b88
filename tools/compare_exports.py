"""Are two checkouts' exports the same? Dump every zoo and benchmark-set export of one tree, compare two dumps.

A change meant to make the converter faster must not change what it exports. Run from each checkout
(the one on ``PYTHONPATH`` is the one converted)::

    PYTHONPATH=/path/to/main python tools/compare_exports.py dump /tmp/exports-main
    PYTHONPATH=$PWD python tools/compare_exports.py dump /tmp/exports-mine
    python tools/compare_exports.py compare /tmp/exports-main /tmp/exports-mine

``dump`` converts every model of ``workbench.zoo.ZOO`` (its builder's defaults) and of the benchmark set
(``tests/support/benchmark_set.py``: bench size static, test size static and with symbolic dimensions)
with ``wb.convert`` and writes each ModelProto (``SerializeToString(deterministic=True)``) beside a
``summary.json`` naming the tree. ``compare`` reads two dumps and reports every model whose bytes differ
once the trees' own paths in source locations (node doc strings and metadata) are made equal: equal
bytes mean the same nodes in the same order, attributes, initializers bit for bit, value_info and
metadata, so onnxruntime computes the same outputs. For a model that differs it says which graph fields
differ and whether the op sequences and node counts are the same. Exit status 1 when any model differs
or is missing. ``--only`` restricts either command to models whose label contains one of the words.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"


def _cases() -> Iterator[tuple[str, Callable[[], tuple[Any, Any]]]]:
    """(label, build) for every export: build returns the callable and its input specs."""
    from tests.support.benchmark_set import SET
    from workbench import zoo

    for name, builder in zoo.ZOO.items():
        yield f"zoo_{name}", lambda builder=builder: (lambda built: (built.fn, built.inputs))(builder())
    for name, builder in SET.items():
        for size, symbolic in (("bench", False), ("test", False), ("test", True)):
            label = f"set_{name}_{size}_{'sym' if symbolic else 'static'}"
            yield label, lambda builder=builder, size=size, symbolic=symbolic: (
                lambda model: (model.fn, model.specs)
            )(builder(size, symbolic=symbolic))


def dump(out: Path, only: list[str] | None) -> int:
    """Convert every case with the workbench on ``sys.path``; write ``<label>.onnx`` and the summary."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import workbench as wb

    root = Path(wb.__file__).resolve().parents[1]
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"root": f"{root}{os.sep}", "models": {}}
    for label, build in _cases():
        if only and not any(word in label for word in only):
            continue
        try:
            fn, specs = build()
            proto = wb.convert(fn, specs).model
        except Exception as error:  # noqa: BLE001 - recorded: both trees must fail the same way
            summary["models"][label] = {"error": f"{type(error).__name__}: {error}"[:300]}
        else:
            (out / f"{label}.onnx").write_bytes(proto.SerializeToString(deterministic=True))
            summary["models"][label] = {"nodes": len(proto.graph.node)}
        print(label, summary["models"][label], file=sys.stderr, flush=True)
    (out / SUMMARY).write_text(json.dumps(summary, indent=1))
    return 0


def _normalised(path: Path, root: str) -> Any:
    """The model at ``path`` with ``root`` in its source locations replaced by a placeholder."""
    import onnx

    model = onnx.load(path)

    def fix(nodes: Any) -> None:
        for node in nodes:
            node.doc_string = node.doc_string.replace(root, "<root>/")
            for prop in node.metadata_props:
                prop.value = prop.value.replace(root, "<root>/")
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    fix(attribute.g.node)
                for graph in attribute.graphs:
                    fix(graph.node)

    fix(model.graph.node)
    for function in model.functions:
        fix(function.node)
    return model


def compare(first: Path, second: Path) -> int:
    """Report the models whose normalised bytes differ between two dumps; 1 when any does."""
    summaries = [json.loads((folder / SUMMARY).read_text()) for folder in (first, second)]
    models = [summary["models"] for summary in summaries]
    differing = 0
    for label in sorted(set(models[0]) | set(models[1])):
        entries = [found.get(label) for found in models]
        if None in entries:
            print(f"MISSING {label}: only in {'the first' if entries[1] is None else 'the second'} dump")
            differing += 1
            continue
        if "error" in entries[0] or "error" in entries[1]:
            if entries[0] != entries[1]:
                print(f"DIFFERS {label}: {entries[0]} / {entries[1]}")
                differing += 1
            continue
        protos = [_normalised(folder / f"{label}.onnx", summary["root"])
                  for folder, summary in zip((first, second), summaries, strict=True)]
        if protos[0].SerializeToString(deterministic=True) == protos[1].SerializeToString(deterministic=True):
            continue
        differing += 1
        fields = [field.name for field in protos[0].graph.DESCRIPTOR.fields
                  if getattr(protos[0].graph, field.name) != getattr(protos[1].graph, field.name)]
        same_ops = [n.op_type for n in protos[0].graph.node] == [n.op_type for n in protos[1].graph.node]
        print(f"DIFFERS {label}: graph fields {fields}; op sequence {'same' if same_ops else 'different'}; "
              f"nodes {len(protos[0].graph.node)} / {len(protos[1].graph.node)}")
    print(f"{len(set(models[0]) | set(models[1]))} exports compared, {differing} differ")
    return 1 if differing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dumping = commands.add_parser("dump", help="convert every model with the workbench on PYTHONPATH")
    dumping.add_argument("out", type=Path)
    dumping.add_argument("--only", help="comma-separated words; only labels containing one are converted")
    comparing = commands.add_parser("compare", help="compare two dumps")
    comparing.add_argument("first", type=Path)
    comparing.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "dump":
        return dump(args.out, args.only.split(",") if args.only else None)
    return compare(args.first, args.second)


if __name__ == "__main__":
    sys.path.append(str(Path(__file__).resolve().parents[1]))  # after PYTHONPATH: the tree it names is converted
    raise SystemExit(main())
