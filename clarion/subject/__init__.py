"""A person's rights over their data (GDPR articles 15, 16 and 21): find them, show everything held
about them (``access``), correct their contact record (``correct``) and stop profiling them
(``objection``). Each verb records one audit event by pseudonym, with counts only."""
