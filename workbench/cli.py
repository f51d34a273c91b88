"""The ``workbench`` command line: one function per subcommand.

``workbench inspect model.onnx [--format text|json]`` and
``workbench to-jax model.onnx -o out_dir/``. Add a subcommand by writing a
``_add_<name>(subparsers)`` function that registers its parser with
``set_defaults(run=...)`` and listing it in ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from workbench.errors import WorkbenchError


# ---- inspect ------------------------------------------------------------------------------
def inspect_model(path: str) -> dict[str, Any]:
    """A JSON-ready summary of an ONNX model (after shape inference)."""
    from workbench.onnx_io import load_model, summarize, with_shapes

    loaded = load_model(path)
    return {"file": loaded.label, **summarize(with_shapes(loaded.proto)).to_json()}


def _format_text(summary: dict[str, Any]) -> str:
    def shape_text(value: dict[str, Any]) -> str:
        shape = value.get("shape")
        return "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"

    lines = [
        f"file:       {summary['file']}",
        f"ir_version: {summary['ir_version']}   producer: {summary['producer'] or '-'}",
        "opsets:     " + ", ".join(f"{d} {v}" for d, v in summary["opsets"].items()),
        f"parameters: {summary['parameters']['count']:,} in {summary['parameters']['tensors']} tensors "
        f"({summary['parameters']['bytes']:,} bytes)",
        "inputs:",
        *[f"  {i['name']!r}: {i.get('dtype', i.get('type'))} {shape_text(i)}" for i in summary["inputs"]],
        "outputs:",
        *[f"  {o['name']!r}: {o.get('dtype', o.get('type'))} {shape_text(o)}" for o in summary["outputs"]],
        "ops:",
        *[f"  {op:<24} {count}" for op, count in summary["op_histogram"].items()],
        "nodes:",
    ]
    for node in summary["nodes"]:
        outs = ", ".join(f"{o['name']!r} {shape_text(o)}" for o in node["outputs"])
        ins = ", ".join(repr(i["name"]) for i in node["inputs"])
        lines.append(f"  {node['op_type']}({ins}) -> {outs}")
    return "\n".join(lines)


def _run_inspect(args: argparse.Namespace) -> int:
    summary = inspect_model(args.model)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(_format_text(summary))
    return 0


def _add_inspect(subparsers: Any) -> None:
    parser = subparsers.add_parser("inspect", help="summarize an ONNX model (inputs, outputs, ops, shapes)")
    parser.add_argument("model", help="path to an .onnx file")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=_run_inspect)


# ---- to-jax -------------------------------------------------------------------------------
def _run_to_jax(args: argparse.Namespace) -> int:
    from workbench.onnx_to_jax.api import save_jax

    out = save_jax(args.model, args.output)
    written = sorted(path.name for path in out.iterdir())  # the folder holds exactly what save_jax wrote
    print(f"wrote {out}: {', '.join(written)}")
    print(f"use: import sys; sys.path.insert(0, {str(out)!r}); from load import load; forward, params = load()")
    return 0


def _add_to_jax(subparsers: Any) -> None:
    parser = subparsers.add_parser("to-jax", help="convert an ONNX model to a JAX module (save_jax)")
    parser.add_argument("model", help="path to an .onnx file")
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.set_defaults(run=_run_to_jax)


# ---- export -------------------------------------------------------------------------------
def _resolve_target(text: str) -> Any:
    """``pkg.module:attr`` (attr may be dotted) → the object; errors name the part at fault."""
    import importlib

    module_name, sep, attribute = text.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"callable {text!r}: expected the form pkg.module:attr, e.g. mymodels:model")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise WorkbenchError(f"callable {text!r}: cannot import module {module_name!r}: {error}") from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)  # the user named this attribute explicitly
        except AttributeError as error:
            raise WorkbenchError(f"callable {text!r}: {module_name} has no attribute {attribute!r}") from error
    return target


def _input_specs(args: argparse.Namespace) -> list[Any]:
    from workbench.specs import TensorSpec, parse_shape_text

    specs = []
    for text in args.input or ():
        if ":" not in text and args.dtype:
            text = f"{text}:{args.dtype}"
        shape, dtype = parse_shape_text(text)
        specs.append(TensorSpec(shape, dtype))
    return specs


def _run_export(args: argparse.Namespace) -> int:
    from workbench.jax_to_onnx.api import to_onnx

    if args.from_exported:
        if args.callable or args.input or args.constraint:
            raise ValueError("--from-exported FILE converts a serialized jax.export.Exported: give no callable, "
                             "--input or --constraint.")
        model = to_onnx(Path(args.from_exported), path=args.output, opset=args.opset, precision=args.precision,
                        runtime=args.runtime)
    else:
        if not args.callable or not args.input:
            raise ValueError("give a callable (pkg.module:attr) and one --input per positional argument, "
                             "or --from-exported FILE.")
        model = to_onnx(_resolve_target(args.callable), _input_specs(args), path=args.output, opset=args.opset,
                        precision=args.precision, constraints=tuple(args.constraint or ()), runtime=args.runtime)
    print(f"wrote {args.output}: {len(model.graph.node)} nodes, opset {model.opset_import[0].version}")
    return 0


def _add_export(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="convert a JAX callable, or a serialized jax.export.Exported, to ONNX (wb.to_onnx from the shell)"
    )
    parser.add_argument("callable", nargs="?", help="pkg.module:attr naming a function, jitted function or module instance")
    parser.add_argument("-i", "--input", action="append", metavar="SPEC",
                        help="one per positional argument: dims separated by commas, ints or names "
                             "(B,30), optionally :dtype (2,64:int32)")  # fmt: skip
    parser.add_argument("--from-exported", metavar="FILE",
                        help="a file written from jax.export.Exported.serialize(): its StableHLO module is converted "
                             "op by op, without the Python source")  # fmt: skip
    parser.add_argument("--dtype", default=None, help="default dtype for inputs without :dtype (float32)")
    parser.add_argument("-c", "--constraint", action="append", metavar="BOUND",
                        help="a bound on a symbolic dimension the program needs, as JAX writes it ('T <= 64'); "
                             "repeatable")  # fmt: skip
    parser.add_argument("--opset", type=int, default=None, help="target ONNX opset (default 21)")
    _add_precision(parser)
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.set_defaults(run=_run_export)


# the names workbench.jax_to_onnx.precision.PRECISIONS and cpu_widening.RUNTIMES accept, written here so that
# building the parser (``workbench --help``) imports no converter; tests/cli checks that they agree
PRECISION_CHOICES = ("float32", "float16", "bfloat16")
RUNTIME_CHOICES = ("onnxruntime-cpu",)


def _add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="float32",
                        help="compute in float16 or bfloat16 (weights stored in it; inputs and outputs stay float32)")
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default=None,
                        help="make the model load in this runtime: nodes onnxruntime's CPU provider has no kernel "
                             "for (bfloat16 MatMul, int16 Max...) compute in float32/int32 between Casts")


# ---- ir -----------------------------------------------------------------------------------
def _run_ir(args: argparse.Namespace) -> int:
    from workbench.jax_to_onnx.graph_ir import api as graph_ir
    from workbench.jax_to_onnx.graph_ir.schema import graph_ir_schema

    if args.ir_command == "export":
        document = graph_ir.export_graph_ir(_resolve_target(args.callable), _input_specs(args))
        graph_ir.save_graph_ir(document, args.output, external_weights=args.external_weights)
        graph = document["graph"]
        saved = graph_ir.load_graph_ir(args.output, resolve_weights=False)  # the side file's name holds its digest
        side = sorted({entry["data"]["external"]["file"] for entry in saved["tensors"].values() if "external" in entry["data"]})
        print(f"wrote {args.output}: {len(graph['eqns'])} equations, {len(document['tensors'])} tensors"
              + (f" (large ones in {', '.join(side)})" if side else ""))
    elif args.ir_command == "to-onnx":
        model = graph_ir.graph_ir_to_onnx(Path(args.ir), path=args.output, opset=args.opset, precision=args.precision,
                                          runtime=args.runtime)
        print(f"wrote {args.output}: {len(model.graph.node)} nodes, opset {model.opset_import[0].version}")
    elif args.ir_command == "validate":
        document = graph_ir.load_graph_ir(Path(args.ir), resolve_weights=False)
        print(f"{args.ir}: a valid {document['format']} Graph IR of {document['name']!r} "
              f"({len(document['graph']['eqns'])} top-level equations)")
    else:  # schema
        print(json.dumps(graph_ir_schema(), indent=1))
    return 0


def _add_ir(subparsers: Any) -> None:
    parser = subparsers.add_parser("ir", help="the Graph IR: export a JAX callable as JSON, convert one to ONNX, validate")
    commands = parser.add_subparsers(dest="ir_command", required=True)
    export = commands.add_parser("export", help="trace a JAX callable and write its Graph IR (wb.export_graph_ir)")
    export.add_argument("callable", help="pkg.module:attr naming a function, jitted function or module instance")
    export.add_argument("-i", "--input", action="append", required=True, metavar="SPEC",
                        help="one per positional argument, as for `workbench export` (B,30 or 2,64:int32)")
    export.add_argument("--dtype", default=None, help="default dtype for inputs without :dtype (float32)")
    export.add_argument("--external-weights", action="store_true",
                        help="put tensors of 1 kB or more in a .safetensors file beside the JSON")
    export.add_argument("-o", "--output", required=True, help="the .json file to write")
    to_onnx = commands.add_parser("to-onnx", help="convert a Graph IR file to ONNX (wb.graph_ir_to_onnx)")
    to_onnx.add_argument("ir", help="a Graph IR .json file")
    to_onnx.add_argument("--opset", type=int, default=None, help="target ONNX opset (default 21)")
    _add_precision(to_onnx)
    to_onnx.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    validate = commands.add_parser("validate", help="check a Graph IR file against the schema")
    validate.add_argument("ir", help="a Graph IR .json file")
    commands.add_parser("schema", help="print the JSON Schema of the Graph IR")
    parser.set_defaults(run=_run_ir)


# ---- coverage -----------------------------------------------------------------------------
def _run_coverage(args: argparse.Namespace) -> int:
    from workbench.analysis import coverage

    entries = coverage.filter_entries(coverage.catalogue(), text=args.search, areas=args.area or ())
    outcomes: list[coverage.Outcome] = []
    if args.execute:
        from tqdm import tqdm

        with tqdm(total=len(entries), desc="running", unit="row") as bar:
            outcomes = coverage.run_entries(entries, on_result=lambda _entry, _outcome: bar.update(1))
    frame = coverage.coverage_frame(entries)
    if args.by == "subject":
        frame = coverage.summary_frame(frame)
        if not args.execute:
            frame = frame.drop(columns=["passed", "run"])
    else:
        frame = frame.drop(columns=["doc"] + ([] if args.execute else ["status", "detail", "max_abs_error", "seconds"]))
    if args.format == "csv":
        text = frame.to_csv(index=False)
    elif args.format == "markdown":
        text = frame.to_markdown(index=False) + "\n"
    else:
        text = frame.to_string(index=False) + "\n"
    if args.output:
        from workbench.files import write_text_atomic

        write_text_atomic(Path(args.output), text)
        print(f"wrote {args.output}: {len(frame)} rows")
    else:
        print(text, end="")
    return 1 if any(outcome.status in ("fail", "error") for outcome in outcomes) else 0  # known failures: 0


def _add_coverage(subparsers: Any) -> None:
    from workbench.analysis.coverage import AREAS

    parser = subparsers.add_parser(
        "coverage", help="what converts: every handler testcase, zoo model and ONNX -> JAX emitter (wb.coverage)"
    )
    parser.add_argument("--area", action="append", choices=AREAS, help="only this area (repeatable)")
    parser.add_argument("--search", default="", metavar="TEXT",
                        help="only rows mentioning TEXT; a JAX function's name (jnp.cumsum, jax.nn.gelu) also finds "
                             "the rows of the primitives it binds")
    parser.add_argument("--by", choices=("testcase", "subject"), default="testcase",
                        help="one row per testcase, or per primitive / model / ONNX op")
    parser.add_argument("--run", dest="execute", action="store_true", help="run the rows (exit status 1 if any fails)")
    parser.add_argument("--format", choices=("text", "markdown", "csv"), default="text")
    parser.add_argument("-o", "--output", metavar="PATH", help="write the table to PATH instead of stdout")
    parser.set_defaults(run=_run_coverage)


# ---- lab ----------------------------------------------------------------------------------
def _run_lab(args: argparse.Namespace) -> int:
    from workbench.jupyter import lab

    target = Path(args.notebook) if args.notebook else lab.default_notebook(Path.cwd())
    reason = "--no-browser was given" if args.no_browser else lab.browser_problem(os.environ)
    plan = lab.plan_lab(target, euid=lab.effective_uid(), no_browser_reason=reason, port=args.port, ip=args.ip)
    if args.dry_run:
        for notice in plan.notices:
            print(f"workbench lab: {notice}")
        print(shlex.join(plan.argv))
        return 0
    lab.run_lab(plan)


def _add_lab(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="start JupyterLab on the quickstart notebook (also as root and without a desktop)",
        description="Start JupyterLab on a notebook (default: notebooks/01_quickstart.ipynb of the repository). "
        "Run as root, it adds --allow-root and says so; where no browser can be opened (no DISPLAY or "
        "WAYLAND_DISPLAY, or Python's webbrowser finds none) it adds --no-browser: open the URL JupyterLab "
        "prints, which leads to the notebook.",
    )
    parser.add_argument("notebook", nargs="?", help="a notebook or a folder (default: the quickstart notebook)")
    parser.add_argument("--port", type=int, default=None, help="the port to serve on (JupyterLab's default: 8888)")
    parser.add_argument("--ip", default=None, help="the address to listen on (JupyterLab's default: localhost)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser, only print the URL")
    parser.add_argument("--dry-run", action="store_true", help="print the notices and the JupyterLab command, start nothing")
    parser.set_defaults(run=_run_lab)


def _add_web(subparsers: Any) -> None:
    from workbench.web.cli import add_web_subcommands

    add_web_subcommands(subparsers)


_SUBCOMMANDS: list[Callable[[Any], None]] = [_add_inspect, _add_to_jax, _add_export, _add_ir, _add_coverage, _add_lab, _add_web]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Convert models between JAX and ONNX.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "web":
        from workbench.web.cli import run_handler

        return run_handler(args)
    try:
        return int(args.run(args))
    except WorkbenchError as e:
        print(f"workbench {args.command}: error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # argument mistakes (bad spec, bad callable path)
        print(f"workbench {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
