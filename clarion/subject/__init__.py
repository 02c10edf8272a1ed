"""Data-subject rights over the warehouse: access, correct, erase, object (docs/privacy.md)."""
