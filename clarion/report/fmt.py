"""Formatting for the report: escaped text, counts, shares, amounts in the shop's currency, signed
changes, segment labels and colours."""

from __future__ import annotations

import html as _html
from typing import Any

BLUE, RED, GREEN, AMBER, GREY = "#1f6feb", "#cf222e", "#1a7f37", "#bf8700", "#6e7781"
SEGMENT_COLOURS = {
    "champions": "#1a7f37",
    "loyal": "#4ac26b",
    "promising": "#1f6feb",
    "new": "#8250df",
    "at_risk_high_value": "#cf222e",
    "at_risk_low_value": "#fa7970",
    "hibernating": "#6e7781",
}


# -- formatting ---------------------------------------------------------------------------------
def e(value: Any) -> str:
    return _html.escape("" if value is None else str(value), quote=True)


def n(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}"


def pct(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def eur(value: Any, currency: dict[str, Any] | None = None) -> str:
    """An amount kept in EUR, as the shop reads it (`currency`: the report's code and units per EUR)."""
    code, rate = (currency["code"], currency["units_per_eur"]) if currency else ("EUR", 1.0)
    return "-" if value is None else f"{code} {value * rate:,.0f}"


def num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def signed(value: Any, kind: str = "n", currency: dict[str, Any] | None = None) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0" if kind == "n" else "no change"
    if kind == "pp":
        text = f"{100 * value:+.1f} pp"
    elif kind == "eur":
        text = ("+" if value >= 0 else "-") + eur(abs(value), currency)
    elif kind == "prob":
        text = f"{value:+.3f}"
    else:
        text = f"{value:+,.0f}"
    return text.replace("-", "\u2212")


def label(segment: str) -> str:
    return segment.replace("_", " ")


def _median(value: Any, unit: str, currency: dict[str, Any] | None = None) -> str:
    if value is None:
        return "-"
    if unit == "pct":
        return pct(value, 0)
    if unit == "eur":
        return eur(value, currency)
    return f"{value:,.0f}" if abs(value) >= 10 or float(value).is_integer() else f"{value:.1f}"
