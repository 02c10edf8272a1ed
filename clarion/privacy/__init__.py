"""Privacy by design: keyed pseudonyms, data-subject rights, retention, fairness, human oversight.

`pseudonym` is the one function every id that leaves the warehouse goes through; the stages of the
rights (access, correct, erase, object) and retention live beside it (docs/privacy.md).
"""

from clarion.privacy.pseudonym import Pseudonymizer, PseudonymKeyError, for_settings

__all__ = ["PseudonymKeyError", "Pseudonymizer", "for_settings"]
