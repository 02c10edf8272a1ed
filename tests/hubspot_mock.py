"""A local HTTP server that speaks enough of HubSpot's CRM v3 API to test an API extraction source.

A real server on 127.0.0.1 (not a mock object), so a client's sessions, retries, timeouts, paging and
error handling are exercised over real sockets. It serves a generated Clarion CRM export under
HubSpot's object names and shapes, and can be told to misbehave (rate limits, transient 500s) the
way the real API does, so the tests can check the client copes.

    with HubSpotMock(export_folder) as api:
        requests.get(f"{api.url}/crm/v3/objects/contacts", headers={"Authorization": "Bearer test-token"})

Each request is numbered (1-based, every request counts, whatever its outcome) and then answered in
this order: a configured 500, a configured 429, a 401 for a missing or wrong token, then the route.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import csv
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clarion.contract import ENTITIES

# HubSpot object name -> Clarion entity.
OBJECTS: dict[str, str] = {
    "contacts": "contacts",
    "products": "products",
    "deals": "orders",
    "line_items": "order_items",
    "email_events": "email_events",
    "tickets": "support_tickets",
    "consents": "consents",
}
ENTITY_OBJECTS: dict[str, str] = {entity: obj for obj, entity in OBJECTS.items()}

LIST_DEFAULT_LIMIT = 10
LIST_MAX_LIMIT = 100
SEARCH_DEFAULT_LIMIT = 10
SEARCH_MAX_LIMIT = 200  # HubSpot's search endpoint allows 200 a page; the list endpoint 100
PREFIX = "/crm/v3/objects/"
COMPARATORS = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
}


class ApiError(Exception):
    """An error answer: HTTP status, HubSpot's error category and a message."""

    def __init__(self, status: int, category: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class _Record:
    """One row as served: its id, the text of every column, and its cursor in two forms."""

    id: str
    sort_key: tuple[int, int, str]  # numeric ids in numeric order, then any others as text
    row: dict[str, str | None]
    ms: int | None  # cursor as epoch milliseconds; None when missing or unparsable
    iso: str | None  # cursor as HubSpot writes it: 2025-08-13T13:24:15.000Z
    modified_property: str = "lastmodifieddate"  # contacts; every other object: hs_lastmodifieddate

    def render(self, properties: list[str] | None) -> dict[str, Any]:
        props = dict(self.row) if properties is None else {p: self.row.get(p) for p in properties}
        props["hs_object_id"] = self.id
        props[self.modified_property] = self.iso
        return {
            "id": self.id,
            "properties": props,
            "createdAt": self.iso,
            "updatedAt": self.iso,
            "archived": False,
        }


def _id_key(value: str) -> tuple[int, int, str]:
    try:
        return (0, int(value), "")
    except ValueError:
        return (1, 0, value)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _text(value: object) -> str | None:
    """A value as the CSV export writes it, so Parquet and CSV exports serve the same strings."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def read_entity(path: Path) -> pa.Table:
    """One export file with every value as text (nulls stay null; a quoted empty string stays '').

    A defective export may hold bytes that are not UTF-8; that file is read as binary instead and
    `_text` decodes it with replacement characters, as a CRM that stores text would."""
    if path.suffix == ".parquet":
        return pq.read_table(path)
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        names = next(csv.reader(fh), [])

    def read(kind: pa.DataType) -> pa.Table:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: kind for n in names},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        return read(pa.string())
    except pa.ArrowInvalid:
        return read(pa.binary())


class _Server(ThreadingHTTPServer):
    """The HTTP server, quiet about clients that hang up (as they do when the mock shuts down)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class HubSpotMock:
    """A HubSpot-CRM-v3-like server over {object name: table}, on 127.0.0.1 at an ephemeral port.

    folder: a Clarion export; each entity's main <entity>.csv or <entity>.parquet is served.
    tables: {object name (or Clarion entity name): table} instead of, or on top of, the folder.
    token: the bearer token every request must carry.
    rate_limit_every: every Nth request answers 429 with Retry-After (None or 0: never).
    retry_after: the Retry-After seconds sent with a 429.
    fail_requests: request numbers (1-based, all requests) that answer 500.
    stall_requests: request numbers that answer only after ``stall_seconds`` (a client times out first).
    stop_paging_after: the page of a list or search that reaches this many records answers without
        ``paging.next``, though more records match (real APIs sometimes end a listing early like
        this; a client cannot tell from the page); None: never.
    """

    def __init__(
        self,
        folder: Path | str | None = None,
        *,
        tables: Mapping[str, pa.Table] | None = None,
        token: str = "test-token",
        rate_limit_every: int | None = None,
        retry_after: int = 1,
        fail_requests: Iterable[int] = (),
        stall_requests: Iterable[int] = (),
        stall_seconds: float = 30.0,
        stop_paging_after: int | None = None,
    ) -> None:
        self.token = token
        self.stop_paging_after = stop_paging_after
        self.rate_limit_every = rate_limit_every
        self.retry_after = retry_after
        self.fail_requests: set[int] = set(fail_requests)
        self.stall_requests: set[int] = set(stall_requests)
        self.stall_seconds = stall_seconds
        self.log: list[tuple[str, str, int]] = []  # (method, path without query, status)
        self.request_count = 0
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, _Record]] = {}
        self._sorted: dict[str, list[_Record]] = {}  # by id, rebuilt lazily after a change
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        if folder is not None:
            folder = Path(folder)
            for obj, entity in OBJECTS.items():
                for suffix in (".csv", ".parquet"):
                    if (folder / f"{entity}{suffix}").exists():
                        self.set_table(obj, read_entity(folder / f"{entity}{suffix}"))
                        break
        for name, table in (tables or {}).items():
            self.set_table(name, table)

    @classmethod
    def from_tables(cls, tables: Mapping[str, pa.Table], **kwargs: Any) -> HubSpotMock:
        """Serve tables built in a test rather than an export folder."""
        return cls(tables=tables, **kwargs)

    # --- data -------------------------------------------------------------------------------------

    @staticmethod
    def object_name(name: str) -> str:
        """HubSpot's object name for either spelling ("deals" or "orders")."""
        if name in OBJECTS:
            return name
        if name in ENTITY_OBJECTS:
            return ENTITY_OBJECTS[name]
        raise KeyError(f"unknown object {name!r}; known: {sorted(OBJECTS)}")

    def set_table(self, obj: str, table: pa.Table) -> None:
        """Replace everything an object serves. A CRM cannot hold a record without an id or two with one
        id, so rows of a defective export without a primary key are left out and the first of a
        duplicated key wins."""
        obj = self.object_name(obj)
        key = ENTITIES[OBJECTS[obj]].primary_key
        records: dict[str, _Record] = {}
        for row in table.to_pylist():
            if row.get(key) not in (None, ""):
                record = self._record(obj, row)
                records.setdefault(record.id, record)
        with self._lock:
            self._data[obj] = records
            self._sorted.pop(obj, None)

    def upsert(self, obj: str, rows: Iterable[Mapping[str, object]]) -> None:
        """Insert or replace rows by primary key; a row's cursor column becomes its lastmodifieddate."""
        obj = self.object_name(obj)
        records = [self._record(obj, row) for row in rows]
        with self._lock:
            data = self._data.setdefault(obj, {})
            for record in records:
                data[record.id] = record
            self._sorted.pop(obj, None)

    def records(self, obj: str) -> list[dict[str, Any]]:
        """Every record of an object as served, in id order (for assertions)."""
        return [r.render(None) for r in self._ordered(self.object_name(obj))]

    def clear_log(self) -> None:
        """Forget logged requests (the request numbering behind fail_requests goes on)."""
        with self._lock:
            self.log.clear()

    @staticmethod
    def _record(obj: str, row: Mapping[str, object]) -> _Record:
        spec = ENTITIES[OBJECTS[obj]]
        text = {str(k): _text(v) for k, v in row.items()}
        key = text.get(spec.primary_key)
        if not key:
            raise ValueError(f"{obj} row has no {spec.primary_key}: {dict(row)!r}")
        moment = _parse_time(text.get(spec.cursor))
        return _Record(
            id=key,
            sort_key=_id_key(key),
            row=text,
            ms=None if moment is None else int(moment.timestamp() * 1000),
            iso=None if moment is None else _iso(moment),
            modified_property=modified_property(obj),
        )

    def _ordered(self, obj: str) -> list[_Record]:
        with self._lock:
            if obj not in self._sorted:
                self._sorted[obj] = sorted(self._data.get(obj, {}).values(), key=lambda r: r.sort_key)
            return self._sorted[obj]

    # --- server lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running; call start() or use it as a context manager")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubSpotMock:
        """Listen on a free port in a background thread; returns self, so `api = HubSpotMock(f).start()`."""
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="hubspot-mock",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections, so a client sees the server gone."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:  # idle keep-alive connections would otherwise outlive the server
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> HubSpotMock:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- request handling (called from the server's threads) --------------------------------------

    def _admit(self, authorization: str | None) -> None:
        """Number the request, then fail it as configured or for want of the right token."""
        with self._lock:
            self.request_count += 1
            number = self.request_count
        if number in self.stall_requests:
            time.sleep(self.stall_seconds)
        if number in self.fail_requests:
            raise ApiError(500, "INTERNAL_ERROR", f"injected failure of request {number}")
        if self.rate_limit_every and number % self.rate_limit_every == 0:
            raise ApiError(
                429,
                "RATE_LIMITS",
                "You have reached your secondly limit.",
                {"Retry-After": str(self.retry_after)},
            )
        if authorization != f"Bearer {self.token}":
            raise ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found or invalid. This API supports OAuth 2.0 and private "
                "app access tokens as a Bearer token.",
            )

    def _resolve(self, obj: str) -> str:
        with self._lock:
            if obj not in OBJECTS or obj not in self._data:
                raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to infer object type from: {obj}")
        return obj

    def _list(self, obj: str, query: dict[str, list[str]]) -> dict[str, Any]:
        limit = _limit(query.get("limit", [None])[-1], LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)
        properties = _properties(query.get("properties"))
        records = self._ordered(self._resolve(obj))
        start = 0
        if after := query.get("after", [None])[-1]:
            last = _id_key(_decode_after(after))
            start = bisect.bisect_right(records, last, key=lambda r: r.sort_key)
        page = records[start : start + limit]
        body: dict[str, Any] = {"results": [r.render(properties) for r in page]}
        if self._more(start + len(page), len(records)):
            cursor = _encode_after(page[-1].id)
            params = {k: v[-1] for k, v in query.items()} | {"limit": str(limit), "after": cursor}
            link = f"{self.url}{PREFIX}{obj}?{urlencode(params)}"
            body["paging"] = {"next": {"after": cursor, "link": link}}
        return body

    def _more(self, end: int, available: int) -> bool:
        """Whether a page ending at record ``end`` of ``available`` says there is a next one."""
        return end < available and (self.stop_paging_after is None or end < self.stop_paging_after)

    def _search(self, obj: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise ApiError(400, "VALIDATION_ERROR", "The request body must be a JSON object.")
        records = self._ordered(self._resolve(obj))
        limit = _limit(payload.get("limit"), SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT)
        properties = _properties(payload.get("properties"))
        groups = payload.get("filterGroups") or []
        if not isinstance(groups, list):
            raise ApiError(400, "VALIDATION_ERROR", "filterGroups must be a list.")
        tests = [[_filter(f, modified_property(obj)) for f in (g or {}).get("filters") or []] for g in groups]
        matches = [r for r in records if not tests or any(all(t(r) for t in group) for group in tests)]
        matches.sort(key=lambda r: (r.ms is None, r.ms or 0, r.sort_key), reverse=_descending(payload))
        try:
            start = int(payload.get("after") or 0)
        except (TypeError, ValueError):
            raise ApiError(400, "VALIDATION_ERROR", f"Invalid after: {payload.get('after')!r}") from None
        page = matches[start : start + limit]
        body: dict[str, Any] = {"total": len(matches), "results": [r.render(properties) for r in page]}
        if self._more(start + len(page), len(matches)):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return body


def _limit(raw: object, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ApiError(400, "VALIDATION_ERROR", f"Invalid limit: {raw!r}") from None
    if value < 1:
        raise ApiError(400, "VALIDATION_ERROR", f"limit must be at least 1, got {value}")
    return min(value, maximum)


def _properties(raw: list[str] | str | None) -> list[str] | None:
    """Requested property names: a list, or comma-separated strings (repeated query parameters too)."""
    if raw is None:
        return None
    items = [raw] if isinstance(raw, str) else raw
    names = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    return names or None


def _encode_after(record_id: str) -> str:
    return base64.urlsafe_b64encode(record_id.encode()).decode().rstrip("=")


def _decode_after(after: str) -> str:
    try:
        return base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "VALIDATION_ERROR", f"Invalid after cursor: {after!r}") from None


def modified_property(obj: str) -> str:
    """As in HubSpot: contacts say lastmodifieddate, every other object hs_lastmodifieddate."""
    return "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate"


def _filter(spec: Any, modified: str = "lastmodifieddate") -> Any:
    """A predicate over records for one HubSpot search filter."""
    if not isinstance(spec, dict):
        raise ApiError(400, "VALIDATION_ERROR", f"A filter must be an object, got {spec!r}")
    name, op, value = spec.get("propertyName"), str(spec.get("operator", "")).upper(), spec.get("value")
    if op not in COMPARATORS:
        raise ApiError(400, "VALIDATION_ERROR", f"Unsupported operator {op!r}")
    compare = COMPARATORS[op]
    if name in ("lastmodifieddate", "hs_lastmodifieddate"):
        if name != modified:  # HubSpot answers 400 for a property the object does not have
            raise ApiError(400, "VALIDATION_ERROR", f"Property {name!r} does not exist on this object")
        target = _millis(value)
        return lambda r: r.ms is not None and compare(r.ms, target)
    if name == "hs_object_id":
        target_key = _id_key(str(value))
        return lambda r: compare(r.sort_key, target_key)
    if not isinstance(name, str) or not name:
        raise ApiError(400, "VALIDATION_ERROR", f"A filter needs a propertyName: {spec!r}")
    return lambda r: r.row.get(name) is not None and compare(r.row[name], str(value))


def _millis(value: object) -> int:
    """A date filter value: epoch milliseconds (number or string) or an ISO 8601 timestamp."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if value.strip().lstrip("-").isdigit():
            return int(value)
        moment = _parse_time(value)
        if moment is not None:
            return int(moment.timestamp() * 1000)
    raise ApiError(400, "VALIDATION_ERROR", f"Invalid lastmodifieddate value: {value!r}")


def _descending(payload: dict[str, Any]) -> bool:
    """Ascending lastmodifieddate then id, as incremental clients ask, unless the sort says otherwise."""
    for sort in payload.get("sorts") or []:
        if isinstance(sort, dict) and sort.get("propertyName") in (
            "lastmodifieddate",
            "hs_lastmodifieddate",
            "hs_object_id",
        ):
            return str(sort.get("direction", "ASCENDING")).upper() == "DESCENDING"
    return False


def _handler_for(api: HubSpotMock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API, so client sessions reuse sockets
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart
        timeout = 30
        server_version = "HubSpotMock/1"

        def setup(self) -> None:
            super().setup()
            with api._lock:
                api._connections.add(self.connection)

        def finish(self) -> None:
            with api._lock:
                api._connections.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the request log is `api.log`, not stderr."""

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""  # always drained, so keep-alive stays in step
            headers: dict[str, str] = {}
            try:
                api._admit(self.headers.get("Authorization"))
                status, body = 200, self._route(method, parts.path, parse_qs(parts.query), raw)
            except ApiError as exc:
                status, headers = exc.status, exc.headers
                body = {
                    "status": "error",
                    "category": exc.category,
                    "message": exc.message,
                    "correlationId": str(uuid.uuid4()),
                }
            except Exception as exc:  # a bug in the mock: answer 500 rather than drop the connection
                status = 500
                body = {"status": "error", "category": "INTERNAL_ERROR", "message": repr(exc)}
            with api._lock:
                api.log.append((method, parts.path, status))
            data = json.dumps(body).encode()
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> dict[str, Any]:
            if not path.startswith(PREFIX):
                raise ApiError(404, "NOT_FOUND", f"No route for {path}")
            segments = path[len(PREFIX) :].strip("/").split("/")
            if method == "GET" and len(segments) == 1 and segments[0]:
                return api._list(segments[0], query)
            if method == "POST" and len(segments) == 2 and segments[1] == "search":
                try:
                    payload = json.loads(raw or b"{}")
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise ApiError(400, "VALIDATION_ERROR", f"Invalid JSON body: {exc}") from None
                return api._search(segments[0], payload)
            if segments[0] and segments[0] not in OBJECTS:
                raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to infer object type from: {segments[0]}")
            raise ApiError(404, "NOT_FOUND", f"No route for {method} {path}")

    return Handler
