"""control ops (see docs/codegen.md)."""
