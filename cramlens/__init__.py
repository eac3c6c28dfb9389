"""cramlens: token cramming on TransformerLens hooks."""
