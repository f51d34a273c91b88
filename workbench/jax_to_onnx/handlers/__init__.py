"""Built-in primitive handlers, one module per primitive family (see registry.BUILTIN_HANDLER_MODULES)."""
