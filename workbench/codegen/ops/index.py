"""index ops (see docs/codegen.md)."""
