"""``workbench web setup | export | smoke``: the browser harness on the command line.

``add_web_subcommands(subparsers)`` adds the ``web`` command to the main ``workbench`` parser;
every leaf parser sets ``handler`` to a function ``(argparse.Namespace) -> int`` (exit code).
``main(argv)`` runs the ``web`` commands alone (``python -m workbench.web.cli ...``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError


def _cmd_setup(args: argparse.Namespace) -> int:
    from workbench.web import runtime

    dist = runtime.setup_runtime(args.cache_dir, force=args.force)
    print(f"onnxruntime-web {runtime.ORT_WEB_VERSION} is installed in {dist}")
    return 0


def _load_npz(path: Path) -> dict[str, Any]:
    import numpy as np

    if not path.is_file():
        raise WorkbenchError(f"inputs file {path} does not exist")
    with np.load(path, allow_pickle=False) as archive:  # never unpickle: the file is untrusted
        return {name: archive[name] for name in archive.files}


def _cmd_export(args: argparse.Namespace) -> int:
    from workbench.web.harness import GreedyGeneration, export_web_harness

    providers = tuple(args.provider) if args.provider else ("webgpu", "wasm")
    generate = None
    if args.generate is not None:
        if not args.prompt:
            raise ValueError("--generate needs --prompt with the prompt's token ids")
        generate = GreedyGeneration(prompt=args.prompt, steps=args.generate)
    info = export_web_harness(
        args.model, args.output, providers=providers, generate=generate,
        inputs=None if args.inputs is None else _load_npz(args.inputs), cache_dir=args.cache_dir,
    )  # fmt: skip
    print(f"web harness written to {info.out_dir} (providers: {', '.join(info.providers)})")
    print(f"smoke-test it with: workbench web smoke {info.out_dir}")
    return 0


def _cmd_smoke(args: argparse.Namespace) -> int:
    from workbench.web.smoke import smoke_test_web_harness

    report = smoke_test_web_harness(args.directory, browser=args.browser, timeout=args.timeout)
    if args.json:
        print(json.dumps({"passed": report.passed, "failure": report.failure, "telemetry": report.telemetry,
                          "requests": report.requests}, indent=1, default=str))  # fmt: skip
    else:
        print(report.summary())
    return 0 if report.passed else 1


def add_web_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``web setup``, ``web export`` and ``web smoke`` to a ``workbench`` subparsers object."""
    web = subparsers.add_parser("web", help="browser harness for onnxruntime-web",
                                description="Run an ONNX model in a browser with onnxruntime-web.")  # fmt: skip
    commands = web.add_subparsers(dest="web_command", required=True, metavar="{setup,export,smoke}")

    setup = commands.add_parser("setup", help="install the pinned onnxruntime-web with npm into the cache")
    setup.add_argument("--cache-dir", type=Path, default=None,
                       help="cache folder (default: $WORKBENCH_WEB_CACHE or the user cache dir)")
    setup.add_argument("--force", action="store_true", help="reinstall even if present")
    setup.set_defaults(handler=_cmd_setup)

    export = commands.add_parser("export", help="write a harness folder for an ONNX model")
    export.add_argument("model", type=Path, help="the .onnx file")
    export.add_argument("-o", "--output", type=Path, required=True, help="harness folder to write")
    export.add_argument("--provider", action="append", metavar="NAME",
                        help="execution provider to try, in order (webgpu, wasm); repeatable; "
                             "default: webgpu then wasm")  # fmt: skip
    export.add_argument("--inputs", type=Path, default=None,
                        help=".npz file with example inputs (default: generated from the input specs)")
    export.add_argument("--generate", type=int, default=None, metavar="STEPS",
                        help="also generate STEPS tokens greedily in the page (decoder models)")
    export.add_argument("--prompt", type=int, nargs="+", default=None, metavar="ID",
                        help="prompt token ids for --generate")
    export.add_argument("--cache-dir", type=Path, default=None, help="onnxruntime-web cache folder")
    export.set_defaults(handler=_cmd_export)

    smoke = commands.add_parser("smoke", help="open a harness folder in headless Chromium and check it")
    smoke.add_argument("directory", type=Path, help="harness folder written by `workbench web export`")
    smoke.add_argument("--browser", default=None, help="Chromium executable (default /usr/bin/chromium)")
    smoke.add_argument("--timeout", type=float, default=60, help="seconds to wait for the page")
    smoke.add_argument("--json", action="store_true", help="print the full report as JSON")
    smoke.set_defaults(handler=_cmd_smoke)
    return web


def run_handler(args: argparse.Namespace) -> int:
    """Call the chosen handler; user errors print one line to stderr and exit with 1 (2 for usage)."""
    try:
        return int(args.handler(args))
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench")
    add_web_subcommands(parser.add_subparsers(dest="command", required=True))
    return run_handler(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
