"""misc ops (see docs/codegen.md)."""
