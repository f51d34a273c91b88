"""Analysis of a conversion: compatibility report, numeric parity, divergence locator, figures."""
