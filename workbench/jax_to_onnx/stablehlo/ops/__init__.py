"""StableHLO op converters, one module per op family (see registry.OP_MODULES)."""
