"""A person's rights over their data (GDPR articles 15-17 and 21): find them, show everything held
about them (``access``), correct their contact record (``correct``), erase them everywhere (``erase``)
and stop profiling them (``objection``). Each verb records one audit event by pseudonym or request
reference, with counts only (docs/privacy.md)."""
