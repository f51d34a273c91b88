"""``workbench coverage``: the catalogue from the shell, and docs/coverage_table.md generated from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from workbench.analysis import coverage as cov
from workbench.cli import main
from workbench.jax_to_onnx.registry import REGISTRY

DOCS_TABLE = Path(__file__).resolve().parents[2] / "docs" / "coverage_table.md"
REGENERATE = "workbench coverage --by subject --format markdown -o docs/coverage_table.md"


@pytest.fixture(autouse=True)
def fresh_outcomes():
    cov.forget_outcomes()
    yield
    cov.forget_outcomes()


def test_docs_table_is_generated_from_the_registries(tmp_path) -> None:
    out = tmp_path / "table.md"
    assert main(["coverage", "--by", "subject", "--format", "markdown", "-o", str(out)]) == 0
    generated = out.read_text(encoding="utf-8")
    assert len(generated.splitlines()) == 2 + len({i.subject for i in REGISTRY.all()}) + len(
        {e.subject for e in cov.catalogue() if not e.key.startswith("jax:")}
    )
    assert DOCS_TABLE.read_text(encoding="utf-8") == generated, f"docs/coverage_table.md is stale; run: {REGENERATE}"


def test_run_reports_statuses_and_exit_code(capsys) -> None:
    assert main(["coverage", "--search", "cummax", "--run", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(row["subject"] == "cummax" and row["status"] == "pass" for row in rows)


def test_search_by_a_jax_function_name_reads_as_the_explorer_does(capsys) -> None:
    # docs/jupyter.md: `workbench coverage --search` reads a JAX function's name as the explorer does
    assert main(["coverage", "--search", "jnp.matmul", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and rows[0]["subject"] == "dot_general"  # the primitive jnp.matmul binds, first


def test_unknown_area_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["coverage", "--area", "pytorch"])
    assert exit_info.value.code == 2 and "invalid choice: 'pytorch'" in capsys.readouterr().err
