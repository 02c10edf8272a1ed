"""`clarion init`: profile a foreign export (files or a database), propose a mapping, write clarion.yaml.

profile.py reads a folder's files (or a schema's tables) with DuckDB and describes each column
(type, nulls, distinct values, date format, value patterns) without keeping personal data;
propose.py says which file is which entity and how its columns map, with a confidence and the
evidence, and turns what it cannot decide into questions; write.py writes the commented YAML.
See docs/onboarding.md.
"""
