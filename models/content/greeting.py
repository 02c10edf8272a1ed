"""The recipient's first name as the export merges it into the copy ("Hi {first_name},").

The name comes from the CRM, which anyone filling in a web form writes to: a "name" can be a link, a
line of markup, an e-mail address or a paragraph. Merged as it is, it would put words into approved
copy that no guardrail read. So a first name goes in only if it looks like one: at most 40
characters of letters (any script, accents included), with single spaces, hyphens or apostrophes
between them. Anything else, and a missing name, becomes the neutral "there" ("Hi there,"); the
export counts how often (never which name). Pure Python.
"""

from __future__ import annotations

import unicodedata

NEUTRAL = "there"  # the default templates greet "Hi {first_name},": "Hi there,"
MAX_LENGTH = 40
SEPARATORS = frozenset(" -'’")
MISSING, INVALID = "missing", "invalid"


def first_name(raw: str | None) -> tuple[str, str | None]:
    """(the name to merge, why it was replaced: None, MISSING or INVALID)."""
    name = unicodedata.normalize("NFC", raw or "").strip()
    if not name:
        return NEUTRAL, MISSING
    return (name, None) if valid(name) else (NEUTRAL, INVALID)


def valid(name: str) -> bool:
    """Letters (and the marks some scripts write them with), single separators between them."""
    if not 0 < len(name) <= MAX_LENGTH or not _letter(name[0]) or name[-1] in SEPARATORS:
        return False
    previous = ""
    for c in name:
        if c in SEPARATORS:
            if previous in SEPARATORS:
                return False
        elif not (_letter(c) or unicodedata.category(c).startswith("M")):
            return False  # digits, '@', '<', ':', '/', '.', control characters, emoji...
        previous = c
    return True


def _letter(c: str) -> bool:
    return unicodedata.category(c).startswith("L")
