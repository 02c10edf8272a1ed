"""Scrub a ticket's text before it is embedded or kept: nothing personal reaches the model.

Tickets quote their writer's name, e-mail, phone and order numbers. Before the text goes to the
sentence-embedding model (and before anything derived from it is stored: a hash, example phrases)
each is replaced by a token: ``[email]``, ``[phone]``, ``[order]``, ``[name]``. The platform-wide
scrubber (clarion.privacy.scrub) runs as well, for the shapes it knows (``name: value`` pairs,
international and national phone formats); its ``[redacted ...]`` marks are kept as they are.

The contact's own first and last name are matched exactly, case-insensitive, as whole words: the
embedding of "Thanks, Anna Berg" says nothing about the ticket's topic anyway.
"""

from __future__ import annotations

import functools
import re

from clarion.privacy.scrub import EMAIL
from clarion.privacy.scrub import scrub as privacy_scrub

# "#123456", "# 123456"
_HASH_NUMBER = re.compile(r"#\s?\d+")
# "order no. 123456", "order number 123456", "order 123456", "order nr 123456", "order id: 123456"
_ORDER_NUMBER = re.compile(
    r"(?i)\b(orders?\s*(?:no\.?|number|nr\.?|num\.?|id|ref\.?|reference)?\s*[:.]?\s*)\d+\b"
)
_LONG_DIGITS = re.compile(r"\d{5,}")  # anything else that long is an id, a card or a phone: gone
_PHONE_MARK = re.compile(r"\[redacted phone\]")
_EMAIL_MARK = re.compile(r"\[redacted email\]")
TOKENS = ("[email]", "[phone]", "[order]", "[name]")


def scrub_ticket(
    text: str | None, names: tuple[str | None, ...] = (), emails: tuple[str | None, ...] = ()
) -> str:
    """``text`` with e-mails, phones, order numbers, long digit runs and the given names replaced by
    tokens. ``names``: the contact's own first and last name; ``emails``: their own address (removed
    even when written in a shape the e-mail pattern would not catch)."""
    if not text:
        return ""
    out = str(text)
    for address in emails:
        if address and out.isascii() and address.isascii():
            out = _replace_ascii(out, address, "[email]")
        elif address:
            out = re.sub(re.escape(address), "[email]", out, flags=re.IGNORECASE)
    out = EMAIL.sub("[email]", out)
    out = _HASH_NUMBER.sub("[order]", out)
    out = _ORDER_NUMBER.sub(lambda m: m.group(1) + "[order]", out)
    out = privacy_scrub(out)
    out = _PHONE_MARK.sub("[phone]", _EMAIL_MARK.sub("[email]", out))
    out = _LONG_DIGITS.sub("[order]", out)
    for name in sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True):
        if _may_hold(out, name):
            out = _name_pattern(name).sub("[name]", out)
    return out


def _replace_ascii(text: str, literal: str, token: str) -> str:
    """Every case-insensitive occurrence of ``literal`` in ``text`` (both ASCII, where lower-casing
    keeps every index) replaced by ``token``, left to right as ``re.sub`` would, without compiling a
    pattern per contact."""
    low, needle = text.lower(), literal.lower()
    parts, start = [], 0
    while (at := low.find(needle, start)) >= 0:
        parts += [text[start:at], token]
        start = at + len(needle)
    return "".join(parts) + text[start:] if parts else text


@functools.lru_cache(maxsize=16_384)
def _name_pattern(name: str) -> re.Pattern[str]:
    """A name as a whole word, any case (kept compiled: names repeat across tickets, and re's own
    cache of 512 patterns is churned by every contact's address)."""
    return re.compile(rf"(?i)(?<!\w){re.escape(name)}(?!\w)")


def _may_hold(text: str, literal: str) -> bool:
    """False only when a case-insensitive match of ``literal`` in ``text`` is impossible: both are
    ASCII (where lower-casing is exactly the regex's case folding) and the lower-cased literal is not
    in the lower-cased text. A contact's own address or name is a new pattern on every ticket, and
    compiling it was most of the scrub's time; most tickets do not hold it."""
    if text.isascii() and literal.isascii():
        return literal.lower() in text.lower()
    return True
