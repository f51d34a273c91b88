"""Tracing: normalize a user callable and turn it into a ClosedJaxpr with named parameters."""
