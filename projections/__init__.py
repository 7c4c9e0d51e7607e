"""Folds over the decision log: customer views, lookup index, the DuckDB analyst snapshot."""
