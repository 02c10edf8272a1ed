"""The report HTML printed to PDF by WeasyPrint, offline: nothing is fetched."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any


def pdf(html_text: str, path: Path) -> Path:
    """Print the HTML to PDF with WeasyPrint (no network: the HTML holds everything it needs)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        # WeasyPrint >= 66 nags once per font when the system lacks HarfBuzz-Subset; fontTools does the
        # same job (slower): the PDF is the same
        warnings.filterwarnings("ignore", message=".*HarfBuzz-Subset.*")
        from weasyprint import HTML

        fonts_log = logging.getLogger("weasyprint")
        fonts_log.addFilter(_quiet_fonts)
        try:
            HTML(string=html_text, url_fetcher=_offline_fetcher()).write_pdf(tmp)
        finally:
            fonts_log.removeFilter(_quiet_fonts)
    tmp.replace(path)
    return path


def _quiet_fonts(record: logging.LogRecord) -> bool:
    return "HarfBuzz-Subset" not in record.getMessage()


def _offline_fetcher() -> Any:
    """A fetcher that fetches nothing: the report must not reach the network (or the disk)."""
    try:
        from weasyprint.urls import URLFetcher  # WeasyPrint >= 68
    except ImportError:  # older: a plain callable

        def refuse(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise ValueError(f"the report must be self-contained; it referred to {url}")

        return refuse
    return URLFetcher(allowed_protocols=("data",))
