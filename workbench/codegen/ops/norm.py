"""norm ops (see docs/codegen.md)."""
