"""reduce ops (see docs/codegen.md)."""
