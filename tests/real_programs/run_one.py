"""Check one real program in this interpreter: ``python -m tests.real_programs.run_one NAME``.

Used for programs that need environment variables set before their libraries are imported.
Exits 0 when the program converts and matches JAX; otherwise prints the error and exits 1.
"""

from __future__ import annotations

import sys
import traceback

from tests.real_programs.catalogue import check_program, load_all


def main(argv: list[str]) -> int:
    (name,) = argv
    try:
        check_program(load_all()[name])
    except Exception:  # noqa: BLE001 - reported to the parent test with its traceback
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
