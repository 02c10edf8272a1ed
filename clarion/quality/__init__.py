"""Quality gates: versioned suites, metrics in DuckDB, validation with Great Expectations."""
