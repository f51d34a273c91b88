"""IPython magics: ``%%to_onnx`` (convert what a cell defines) and ``%onnx_view`` (show any model).

Loaded with ``%load_ext workbench``. The magics stay thin: they parse options,
run the cell, call the public ``workbench`` API a script would call, and display
the result object they also bind in the namespace.
"""

from __future__ import annotations

import ast
import keyword
import operator
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

from workbench.errors import SpecError, UnsupportedPrimitiveError, WorkbenchError
from workbench.files import WriteError, write_text_atomic
from workbench.jupyter.result import OnnxResult

if TYPE_CHECKING:
    from workbench.specs import TensorSpec

_INPUT_HELP = (
    "Input spec, one per positional argument, repeatable: comma-separated dims, each an int or a "
    "symbolic name, optionally ':dtype' (default float32). Examples: -i B,30   -i 2,64:int32   -i :int32 (scalar)."
)


def parse_input_spec(text: str) -> "TensorSpec":
    """``B,30`` -> TensorSpec(("B", 30), float32); ``2,64:int32`` -> TensorSpec((2, 64), int32).

    The same grammar as ``workbench export --input``; raises SpecError naming the spec.
    """
    from workbench.specs import (  # imports jax: only when used
        TensorSpec,
        parse_input_specs,
        parse_shape_text,
    )

    try:
        shape, dtype = parse_shape_text(text)
        spec = TensorSpec(shape, dtype)
        parse_input_specs([spec])  # reject what the converter would reject (e.g. '-1'), now, as a usage error
    except SpecError as error:
        raise SpecError(f"--input {text!r}: {error}") from None
    return spec


def defined_names(cell_source: str) -> list[str]:
    """Names the cell's top-level statements bind, in order (functions, classes, assignment targets)."""
    tree = ast.parse(cell_source)
    names: list[str] = []
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(statement.name)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                names.extend(node.id for node in ast.walk(target) if isinstance(node, ast.Name))
    return names


def _unquoted(text: str) -> str:
    """``text`` without the quotes around it: IPython's option parser keeps them (``-c 'T <= 64'``)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


@magics_class
class WorkbenchMagics(Magics):
    """The workbench's IPython magics."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self._outer_count: int | None = None  # execution count of the running cell (see remember_cell)
        self._running_body = False

    @magic_arguments.magic_arguments()
    @magic_arguments.argument(
        "--fn", metavar="NAME",
        help="The function or callable object to convert (a name, dotted access allowed). "
        "Default: the last top-level function or callable object the cell defines.",
    )
    @magic_arguments.argument("-i", "--input", dest="inputs", action="append", default=[], metavar="SPEC", help=_INPUT_HELP)
    @magic_arguments.argument(
        "--specs", metavar="NAME",
        help="Instead of -i: a variable (the cell may define it) holding the list of input specs, one per positional "
        "argument, as wb.to_onnx takes them: dicts, tuples and lists of shapes for pytree arguments, "
        "jax.ShapeDtypeStruct, arrays. E.g. specs = [{'w': (3,), 'b': ()}, ('N', 3)].",
    )
    @magic_arguments.argument(
        "-c", "--constraint", dest="constraints", action="append", default=[], metavar="BOUND",
        help="A bound on a symbolic dimension the function needs, as JAX writes it: -c 'T <= 64' (repeatable).",
    )
    @magic_arguments.argument("--out", metavar="PATH", help="Write the ONNX model to PATH.")
    @magic_arguments.argument(
        "--ir", metavar="PATH",
        help="Also write the Graph IR (JSON, schema workbench_graph_ir_v1) to PATH; weights go to a .safetensors beside it.",
    )
    @magic_arguments.argument("--opset", type=int, metavar="N", help="Target ONNX opset (default: the converter's).")
    @magic_arguments.argument(
        "--precision", default="float32", metavar="DTYPE",
        help="float16 or bfloat16: compute in it, weights stored in it, inputs and outputs kept float32 (wb.to_onnx's precision=).",
    )
    @magic_arguments.argument(
        "--runtime", metavar="NAME",
        help="onnxruntime-cpu: nodes onnxruntime's CPU provider has no kernel for (a bfloat16 MatMul, an int16 Max) "
        "compute in float32/int32 between Casts, so the model loads there (wb.to_onnx's runtime=).",
    )
    @magic_arguments.argument("--no-view", action="store_true", help="Do not show the inline graph viewer.")
    @magic_arguments.argument(
        "--parity", action="store_true",
        help="Run the model in onnxruntime and JAX and plot the parity; when they differ, also locate the first node that drifts.",
    )
    @magic_arguments.argument(
        "--to-jax", nargs="?", const="", default=None, metavar="PATH",
        help="Round-trip back to JAX source: show it, or write it to PATH.",
    )
    @magic_arguments.argument(
        "--name", default="_onnx", metavar="VAR",
        help="Bind the result object (model, path, report...) to VAR in the namespace (default: _onnx).",
    )
    @cell_magic
    def to_onnx(self, line: str, cell: str) -> None:
        """Run the cell, then convert the function it defines to ONNX and show the graph inline.

        The cell runs in the user namespace like any cell (its definitions stay available; a failing
        cell shows its traceback and nothing is converted). Output: a header (model size, node and
        parameter counts, time taken) and the inline viewer with a shape on every edge; the table of
        unsupported primitives instead, if any. The result object is bound to ``--name`` (``_onnx``).

        Example::

            %%to_onnx -i B,30 --out mlp.onnx
            def mlp(x):
                return jax.nn.gelu(x @ w1) @ w2
        """
        args = magic_arguments.parse_argstring(self.to_onnx, line)  # raises UsageError on bad options
        if not args.name.isidentifier() or keyword.iskeyword(args.name):
            raise UsageError(f"--name {args.name!r} is not a Python variable name.")
        if args.opset is not None and args.opset < 1:
            raise UsageError(f"--opset {args.opset}: give a positive opset number such as 21.")
        if args.inputs and args.specs is not None:
            raise UsageError("Give the inputs with -i/--input or with --specs NAME, not both.")
        if not args.inputs and args.specs is None:
            raise UsageError(
                "Give one --input/-i SPEC per positional argument, e.g. %%to_onnx -i B,30 (or --specs NAME: a variable "
                "holding the list of specs, for dict or tuple arguments)."
            )
        try:
            inputs: list[Any] = [parse_input_spec(spec) for spec in args.inputs]
            from workbench.jax_to_onnx.precision import Precision

            Precision.of(args.precision, runtime=args.runtime)  # a wrong name is a usage error, before the cell runs
        except SpecError as error:
            raise UsageError(str(error)) from None
        execution = self._run_body(line, cell)
        if not execution.success:
            raise UsageError("The cell failed (traceback above); nothing was converted.")

        fn_name, fn = self._callable(args.fn, cell)
        if args.specs is not None:
            inputs = self._specs(args.specs)
        from workbench.jax_to_onnx.api import convert

        start = time.perf_counter()
        try:
            # the Conversion: --parity need not trace again
            constraints = tuple(_unquoted(text) for text in args.constraints)
            conversion = convert(fn, inputs, opset=args.opset, constraints=constraints, precision=args.precision,
                                 runtime=args.runtime)
            if args.out:
                conversion.save(args.out)
            model = conversion.model
        except UnsupportedPrimitiveError as error:
            result = OnnxResult(fn_name, time.perf_counter() - start, unsupported=list(error.primitives))
            from workbench.analysis.report import check
            from workbench.jupyter.unsupported_table import UnsupportedTable

            report = check(fn, inputs)
            result.unsupported_table = UnsupportedTable(report, header_html=result._header_html(), stub_call=f"{args.name}.stub")
            self.shell.user_ns[args.name] = result
            display(result)
            return
        except (SpecError, WriteError) as error:  # the options are at fault (a spec, the --out path), not the model
            raise UsageError(str(error)) from None
        except Exception as error:  # noqa: BLE001 - any failure inside the user's model: one short message
            self._fail(fn_name, fn, args.inputs, error, specs_option=None if args.specs is None else f"--specs {args.specs}")
        result = OnnxResult(fn_name, time.perf_counter() - start, model=model, path=args.out)
        if args.ir:
            from workbench.jax_to_onnx.graph_ir.api import graph_ir_of_traced, save_graph_ir

            try:  # from the conversion's own trace: the cell's function is traced once
                save_graph_ir(graph_ir_of_traced(conversion.traced), args.ir, external_weights=True)
            except WriteError as error:  # the --ir path is at fault (a folder, a file on the path), not the model
                raise UsageError(f"--ir {args.ir}: {error}") from None
            result.ir_path = args.ir
        if not args.no_view:
            from workbench.jupyter.viewer import view

            result.viewer = view(model, name=fn_name)
        if args.to_jax is not None:
            from workbench.onnx_to_jax.api import to_jax_source

            result.jax_source = to_jax_source(model)
            if args.to_jax:
                try:
                    write_text_atomic(Path(args.to_jax), result.jax_source)
                except WriteError as error:  # the --to-jax path is at fault, not the model
                    raise UsageError(f"--to-jax {args.to_jax}: {error}") from None
                result.jax_path = args.to_jax
        if args.parity:
            from workbench.analysis.parity import parity

            result.parity = parity(conversion, name=fn_name)  # the Conversion: nothing traced again
            if not result.parity.ok:  # which node drifts first, on the first failing sample
                result.divergence = result.parity.locate()
        self.shell.user_ns[args.name] = result
        display(result)
        if result.jax_source is not None and not args.to_jax:
            display(result.jax_source)  # a JaxSource: forward first, the runtime helpers folded away
        if result.parity is not None or result.divergence is not None:
            from workbench.jupyter.plot_output import PlotOutput
        if result.parity is not None:
            display(result.parity)  # verdict and per-output error table
            # plotly: ONNX vs JAX scatter and error histogram (a line of text where plotly cannot render)
            display(PlotOutput(result.parity.figure(), f"parity plot (plotly): {args.name}.parity.figure()"))
        if result.divergence is not None:
            display(result.divergence)  # the first node that drifts, its primitive and the user's line
            # error along the graph, that node marked
            display(PlotOutput(result.divergence.figure(), f"divergence plot (plotly): {args.name}.divergence.figure()"))

    def _specs(self, name: str) -> list[Any]:
        """The input specs held by the variable ``--specs`` names, checked as wb.to_onnx checks them."""
        from workbench.specs import parse_input_specs

        if not name.isidentifier():
            raise UsageError(f"--specs {name!r}: give the name of a variable holding the list of input specs.")
        if name not in self.shell.user_ns:
            raise UsageError(f"--specs {name!r}: {name!r} is not defined; define it (in this cell or before) as a list of specs.")
        specs = self.shell.user_ns[name]
        if isinstance(specs, (list, tuple)) and specs and all(isinstance(dim, (int, str)) for dim in specs):
            # one shape, not a list of specs: parse_input_specs would read each dim as an argument's spec
            raise UsageError(f"--specs {name!r}: {name} = {specs!r} is one shape; give the list of specs, one per "
                             f"positional argument: {name} = [{tuple(specs)!r}].")
        if isinstance(specs, tuple):
            specs = list(specs)
        try:
            parse_input_specs(specs)
        except SpecError as error:
            raise UsageError(f"--specs {name!r}: {error}") from None
        return specs

    def _callable(self, fn_option: str | None, cell: str) -> tuple[str, Any]:
        namespace = self.shell.user_ns
        if fn_option is not None:
            head, _, rest = fn_option.partition(".")
            if not all(part.isidentifier() for part in fn_option.split(".")):
                raise UsageError(f"--fn {fn_option!r}: give a name such as 'forward' or 'model.encode'.")
            if head not in namespace:
                raise UsageError(f"--fn {fn_option!r}: {head!r} is not defined.")
            try:
                fn = operator.attrgetter(rest)(namespace[head]) if rest else namespace[head]
            except AttributeError as error:
                raise UsageError(f"--fn {fn_option!r}: {error}") from None
            if not callable(fn):
                raise UsageError(f"--fn {fn_option!r} is a {type(fn).__name__}, not a function or callable object.")
            return fn_option, fn
        source = self.shell.transform_cell(cell)  # turns %magics and !commands into Python
        for name in reversed(defined_names(source)):
            value = namespace.get(name)
            if callable(value) and not isinstance(value, type):
                return name, value
        raise UsageError("The cell defines no function or callable object to convert; name one with --fn NAME.")

    # ------------------------------------------------------------------ the cell body and failures
    def remember_cell(self, info: Any) -> None:
        """``pre_run_cell`` hook: the execution count of the cell about to run (the prompt's number).

        IPython counts a cell before running it when it stores history, so the body a cell magic
        runs would otherwise be compiled under the next number (``Cell In[14]`` under prompt [13]).
        """
        if self._running_body:
            return
        count = self.shell.execution_count
        self._outer_count = count - 1 if info.store_history else count

    def _run_body(self, line: str, cell: str) -> Any:
        """Run the magic's body as the cell it is: under the cell's number, with the cell's line numbers."""
        saved = self.shell.execution_count
        if self._outer_count is not None:
            self.shell.execution_count = self._outer_count
        self._running_body = True
        try:
            # the %%to_onnx line as a comment, so line N of the body is line N of the cell (IPython
            # drops leading blank lines, not comments)
            return self.shell.run_cell(f"# %%to_onnx {line}\n{cell}", store_history=False)
        finally:
            self._running_body = False
            self.shell.execution_count = saved

    def _fail(self, fn_name: str, fn: Any, spec_texts: list[str], error: Exception, *, specs_option: str | None = None) -> None:
        """Show one short message (the user's line, what to change, the full traceback folded) and fail the cell."""
        from workbench.jupyter.failure import ConversionFailed, describe_failure

        from workbench.analysis.report import check

        def traces(texts: list[str]) -> bool:
            try:
                check(fn, [parse_input_spec(text) for text in texts])
            except Exception:  # noqa: BLE001 - "does not trace" is the answer sought
                return False
            return True

        def format_exception(problem: BaseException) -> list[str]:
            lines = self.shell.InteractiveTB.structured_traceback(type(problem), problem, problem.__traceback__)
            return ["\n".join(lines)]

        failure = describe_failure(fn_name, spec_texts, error, traces, format_exception, specs_option=specs_option)
        display(failure)
        raise ConversionFailed(failure) from error

    @magic_arguments.magic_arguments()
    @magic_arguments.argument("--height", type=int, default=500, metavar="PX", help="Viewer height in pixels.")
    @magic_arguments.argument(
        "--transport", default="auto", metavar="HOW",
        help="How the viewer reaches the browser: auto (the first that works here), jupyter-server, colab, "
        "kernel-server or inline (a self-contained drawing).",
    )
    @magic_arguments.argument(
        "source", nargs="+", help="An .onnx file path, or a variable/expression holding an onnx.ModelProto or a %%to_onnx result."
    )
    @line_magic
    def onnx_view(self, line: str) -> Any:
        """Show an ONNX model or file inline with Netron (shapes on every edge), e.g. ``%onnx_view mlp.onnx``."""
        from workbench.jupyter.viewer import view

        args = magic_arguments.parse_argstring(self.onnx_view, line)
        text = " ".join(args.source)
        if Path(text).is_file():
            model: Any = text
        else:
            try:
                model = self.shell.ev(text)
            except Exception as error:
                raise UsageError(f"%onnx_view: {text!r} is neither an existing file nor a variable ({error}).") from None
        if isinstance(model, OnnxResult):
            if model.model is None:
                raise UsageError(f"%onnx_view: {text!r} holds no model (the conversion found unsupported primitives).")
            model = model.model
        if not isinstance(model, (onnx.ModelProto, str, os.PathLike, bytes)):
            raise UsageError(f"%onnx_view: {text!r} is a {type(model).__name__}, not an ONNX model or file path.")
        try:
            return view(model, height=args.height, transport=args.transport)
        except (WorkbenchError, ValueError) as error:
            raise UsageError(f"%onnx_view: {error}") from None


def load_ipython_extension(ipython: Any) -> None:
    magics = WorkbenchMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.remember_cell)


def unload_ipython_extension(ipython: Any) -> None:
    manager = ipython.magics_manager
    manager.magics["cell"].pop("to_onnx", None)
    manager.magics["line"].pop("onnx_view", None)
    magics = manager.registry.pop(WorkbenchMagics.__name__, None)
    if magics is not None:
        ipython.events.unregister("pre_run_cell", magics.remember_cell)


__all__ = ["WorkbenchMagics", "defined_names", "load_ipython_extension", "parse_input_spec", "unload_ipython_extension"]
