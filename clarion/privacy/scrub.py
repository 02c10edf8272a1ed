"""Scrub personal data out of text that leaves the warehouse: error messages, failure states, logs.

Why: an exception raised deep inside a driver, a CSV parser or a SQL engine quotes whatever value
it choked on (``duplicate key (email)=(jane@example.com)``, ``Expected 9 columns, got 10: 17,Jane,...``).
That text is then copied into ``audit.runs.error``, the Prefect flow run's state message, and every
log handler, none of which may hold personal data (docs/privacy.md). :func:`scrub` replaces, in any
text:

- e-mail addresses -> ``[redacted email]``;
- phone numbers in international (``+44 7700 900123``, ``0044 ...``) and national formats
  (``(030) 1234 5678``, ``0171-1234567``, ``555-123-4567``) -> ``[redacted phone]``;
- the value after a personal field's name (the contract's ``pii`` columns: first_name, last_name,
  email, phone, subject, body; plus ``text``), quoted or not, in the usual shapes
  (``first_name='Jane'``, ``"body": "..."``, ``(email)=(...)``, ``last_name: Doe``) ->
  ``[redacted first_name]``;
- a parser's echo of the offending row (``..., got 10: <the row>``) -> ``[redacted row]``.

Dates, times, run ids, load ids and plain counts are left alone: a message must still say what
failed and where. :class:`ScrubFilter` applies the same to every log record it sees.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable

from clarion.contract import ENTITIES

PII_FIELDS: tuple[str, ...] = tuple(
    sorted({c.name for e in ENTITIES.values() for c in e.columns if c.pii} | {"text"})
)

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# a run of digits with the separators people write phone numbers with; checked by _is_phone
_PHONE_CANDIDATE = re.compile(r"(?<![\w.:/#-])(?:\+|00)?\(?\d[\d ()./-]{5,}\d(?![\w:/-])")
_DATE_OR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}")
# "field=value" shapes: (email)=(x), email='x', "email": "x", email: x, email=x
_FIELD = "|".join(re.escape(f) for f in sorted(PII_FIELDS, key=len, reverse=True))
_FIELD_VALUE = re.compile(
    rf"""(?ix)
    (?P<head>\(?["'`]?\b(?P<field>{_FIELD})\b["'`]?\)?\s*(?:=|:|\bis\b)\s*)
    (?:
        \((?P<paren>[^)]*)\)            # (email)=(jane@example.com)
      | (?P<q>["'`])(?P<quoted>.*?)(?P=q)  # 'Jane' / "a ticket body"
      | (?P<bare>[^\s,;)\]}}]+)          # Jane
    )
    """
)
_EMPTY = {"null", "none", "nan", "''", '""'}
_ROW_ECHO = re.compile(r"(?i)(\bgot \d+:?\s*:\s*|\bcolumns, got \d+:\s*)(.+)$", re.MULTILINE)


def _is_phone(candidate: str) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    if not 7 <= digits <= 15 or _DATE_OR_TIME.search(candidate):
        return False
    if candidate.count(".") == 1:  # a decimal number (a load id, an amount)
        return False
    international = candidate.startswith(("+", "00"))
    national_prefix = candidate.lstrip("(").startswith("0")
    grouped = bool(re.search(r"\d[ ()/.-]+\d", candidate))
    # a plain run of digits (an id, a count) is not taken for a phone number unless it is
    # written like one: with a country or trunk prefix, or in groups
    return international or national_prefix or grouped


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    return "[redacted phone]" if _is_phone(text) else text


def _field(match: re.Match[str]) -> str:
    field = match.group("field").lower()
    bare = (match.group("bare") or "").lower()
    if bare in _EMPTY or bare.startswith("[redacted"):
        return match.group(0)  # "phone: null" says nothing about anyone; a redacted value stays as it is
    redacted = f"[redacted {field}]"
    if match.group("paren") is not None:
        return f"{match.group('head')}({redacted})"
    if match.group("q") is not None:
        q = match.group("q")
        return f"{match.group('head')}{q}{redacted}{q}"
    return f"{match.group('head')}{redacted}"


def scrub(text: str | None) -> str:
    """``text`` without e-mail addresses, phone numbers, quoted row contents and the values of
    personal fields (see the module's docstring); ``None`` gives ``""``."""
    if not text:
        return text or ""
    out = _ROW_ECHO.sub(lambda m: m.group(1) + "[redacted row]", str(text))
    out = _FIELD_VALUE.sub(_field, out)
    out = EMAIL.sub("[redacted email]", out)
    return _PHONE_CANDIDATE.sub(_phone, out)


def scrub_exception(exc: BaseException) -> str:
    """``Name: message`` of an exception, scrubbed: what ``audit.runs.error`` keeps."""
    return scrub(f"{type(exc).__name__}: {exc}")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def scrub_chain(exc: BaseException) -> BaseException:
    """Scrub the messages of ``exc`` and of every exception it was raised from, in place, and return
    ``exc``. Why in place: the flow re-raises it, and Prefect turns it into the run's failure state
    message and logs its traceback (causes included) to the API; a scrubbed copy of another type
    would change what the CLI and tests catch."""
    for err in _chain(exc):
        # an exception type that forbids it keeps its message: the log filter still withholds it
        with contextlib.suppress(AttributeError, TypeError):
            err.args = tuple(scrub(a) if isinstance(a, str) else a for a in err.args)
    return exc


def chain_is_clean(exc: BaseException) -> bool:
    return all(scrub(str(err)) == str(err) for err in _chain(exc))


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs each record's message (its arguments merged in) and the text of
    an attached exception, so neither a handler nor Prefect's API log sink ever sees the raw values."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if not chain_is_clean(exc):
                # the traceback would print the raw messages (its causes' too): keep the exception's
                # name and scrubbed message, withhold the rest
                record.exc_text = f"{scrub_exception(exc)} (traceback withheld: it quoted data)"
                record.exc_info = None
        elif record.exc_text and scrub(record.exc_text) != record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


_FILTER = ScrubFilter()
LOGGERS = ("clarion", "flows", "prefect")


def install(names: Iterable[str] = LOGGERS) -> None:
    """Put the scrub filter on the named loggers and on every handler of the root logger and of
    those loggers (a filter on a logger does not see records its children propagate). Idempotent;
    called by the CLI and the flow entry points, and again after Prefect configures its logging."""
    loggers = [logging.getLogger(n) for n in names] + [logging.getLogger()]
    seen = {n for n in names}
    # Prefect's own child loggers (prefect.flow_runs, prefect.task_runs, ...) log directly
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in seen and name not in seen:
            logger = logging.root.manager.loggerDict[name]
            if isinstance(logger, logging.Logger):
                loggers.append(logger)
    for logger in loggers:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
