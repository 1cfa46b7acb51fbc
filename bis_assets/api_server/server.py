"""A local HTTP server speaking the Back In Stock Reports API, with fault injection."""

import base64
import binascii
import dataclasses
import hashlib
import json
import socket
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VARIANTS_PATH = "/api/variants"
SORT_FIELDS = (
    "notification_last_added_at", "notification_last_sent_at",
    "notifications_count", "sent_notifications_count", "unsent_notifications_count",
)
DEFAULT_PER_PAGE = 50
JSON_TYPE = "application/json; charset=utf-8"
MAX_STALL_SECONDS = 120.0  # no hang or delay outlives this, whatever was asked


@dataclasses.dataclass
class Fault:
    """A misbehaviour for the next ``times`` matching requests.

    ``hang`` stalls before any byte is sent; ``delay`` sends the headers, then
    stalls before the body. Status 200 without ``body`` serves the normal
    answer, so ``Fault(200, hang=5)`` is just a slow page.
    """

    status: int = 503
    times: int = 1
    page: int | None = None
    retry_after: str | None = None
    body: str | None = None
    content_type: str = "application/json"
    hang: float = 0.0
    reset: bool = False
    delay: float = 0.0
    account: str | None = None  # match one account's name only


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One request as answered; holds the account name, never the token."""

    time: float
    page: int | None
    per_page: int | None
    status: int | None  # None: nothing was sent (reset, or the server stopped)
    account: str | None


@dataclasses.dataclass
class _Account:
    name: str
    rows: list[dict]
    plan_ok: bool = True
    script: dict[int, list[dict]] | None = None
    views: dict[tuple, list[dict]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Query:
    page: int | None = 1
    per_page: int | None = None
    q: str = ""
    sort: str | None = None
    order: str = "asc"
    error: str | None = None


def _token_key(token: str) -> str:
    # Accounts are keyed by a digest so the server never keeps the token.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _parse_query(query: str) -> _Query:
    """Read paging, search and sort parameters, noting a bad one."""
    params = {name: values[0] for name, values in parse_qs(query).items()}
    parsed = _Query(q=params.get("q", ""), sort=params.get("sort"))
    parsed.order = params.get("order", "asc")

    for name in ("page", "per_page"):
        if name in params:
            value = int(params[name]) if params[name].isdecimal() else None
            setattr(parsed, name, value)
            if not value:
                parsed.error = f"{name} must be a positive integer"

    if parsed.sort is not None and parsed.sort not in SORT_FIELDS:
        parsed.error = f"sort must be one of {', '.join(SORT_FIELDS)}"
    if parsed.order not in ("asc", "desc"):
        parsed.error = "order must be asc or desc"
    return parsed


def _error_text(status: int, message: str | None = None) -> str:
    """A small JSON error body, e.g. {"error": "Not Found"}."""
    if status in (204, 304):  # these must not carry a body
        return ""
    try:
        message = message or HTTPStatus(status).phrase
    except ValueError:  # absurd statuses are welcome in fault injection
        message = "Error"
    return json.dumps({"error": message})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BackInStockTestServer/1.0"
    timeout = 30  # idle keep-alive connections end by themselves

    def setup(self) -> None:
        super().setup()
        self.server.app._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.app._track(self.connection, add=False)
        super().finish()

    def log_message(self, format: str, *args) -> None:
        """Stay silent: request lines and headers are nobody's business."""

    def do_GET(self) -> None:
        app: BackInStockServer = self.server.app
        query = _parse_query(urlsplit(self.path).query)
        account = app._account_for(self.headers.get("Authorization"))
        self._unlogged = RequestRecord(
            time.monotonic(), query.page, query.per_page, None,
            account.name if account else None)

        try:
            self._serve(app, query, account)
        except OSError:  # the client went away mid-answer
            self.close_connection = True
        self._log(None)  # nothing was sent, unless logged already

    def _log(self, status: int | None) -> None:
        # Logged before the last bytes go out, so a client that has its
        # answer always finds the request in the log.
        if self._unlogged is not None:
            record = dataclasses.replace(self._unlogged, status=status)
            self.server.app._record(record)
            self._unlogged = None

    def _serve(self, app, query: _Query, account: _Account | None) -> None:
        if not app._pause(app.latency):
            return self._drop()
        if urlsplit(self.path).path.rstrip("/") != VARIANTS_PATH:
            return self._send_error(404)
        if account is None:
            challenge = {"WWW-Authenticate": 'Basic realm="Back In Stock"'}
            return self._send_error(401, headers=challenge)
        if not account.plan_ok:
            return self._send_error(403, "The API needs the Medium plan or above")
        if query.error:
            return self._send_error(400, query.error)

        fault = app._take_fault(query.page, account.name) or Fault(status=200)
        if fault.reset or fault.body is not None or fault.status != 200:
            return self._send_fault(app, fault)
        if not app._hang(fault.hang):
            return self._drop()

        if account.script is not None:
            return self._send_scripted(app, account, query.page, fault.delay)
        rows = app._page_rows(account, query)
        body = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
        return self._send(200, body.encode("utf-8"), JSON_TYPE, delay=fault.delay)

    def _send_fault(self, app, fault: Fault) -> None:
        if not app._pause(fault.hang):
            return self._drop()
        if fault.reset:
            return self._reset_connection()

        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        body = fault.body if fault.body is not None else _error_text(fault.status)
        return self._send(fault.status, body.encode("utf-8"), fault.content_type,
                          headers, fault.delay)

    def _send_scripted(self, app, account: _Account, page: int,
                       delay: float) -> None:
        entry = app._next_scripted(account, page) or {"body": []}
        if not app._pause(entry.get("delay", 0.0)):
            return self._drop()

        status = entry.get("status", 200)
        if "text" in entry:
            text = entry["text"]
        elif "body" in entry:
            text = json.dumps(entry["body"], ensure_ascii=False)
        else:  # a bare status, such as {"page": 1, "status": 401}
            text = _error_text(status) if status >= 400 else "[]"
        content_type = entry.get("content_type", "application/json")
        return self._send(status, text.encode("utf-8"), content_type,
                          entry.get("headers"), delay)

    def _send_error(self, status: int, message: str | None = None,
                    headers: dict | None = None) -> None:
        body = _error_text(status, message).encode("utf-8")
        return self._send(status, body, JSON_TYPE, headers)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict | None = None, delay: float = 0.0) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()

        if not self.server.app._pause(delay):
            return self._drop()
        self._log(status)
        self.wfile.write(body)

    def _drop(self) -> None:
        self.close_connection = True

    def _reset_connection(self) -> None:
        # Linger 0 makes close() send RST; closing rfile first lets it really close.
        self._log(None)
        linger_off = struct.pack("ii", 1, 0)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_off)
        self.rfile.close()
        self.connection.close()
        self.close_connection = True


class BackInStockServer:
    """The Back In Stock ``/api/variants`` endpoint on 127.0.0.1, in a thread.

    ``latency``, ``max_per_page``, ``repeat_last_page`` (a page past the end
    repeats the last one) and ``ignore_page`` (always page 1) may be set at
    any time.
    """

    def __init__(self, port: int = 0, *, max_per_page: int = 250,
                 latency: float = 0.0) -> None:
        self.port = port
        self.max_per_page = max_per_page
        self.latency = latency
        self.repeat_last_page = False
        self.ignore_page = False
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._faults: list[Fault] = []
        self._log: list[RequestRecord] = []
        self._connections: set[socket.socket] = set()
        self._hanging = 0
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Where the server listens, e.g. ``http://127.0.0.1:50123``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "BackInStockServer":
        """Bind and serve in a daemon thread; returns self."""
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._httpd.app = self
        self.port = self._httpd.server_address[1]

        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"bis-api-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cutting short stalled answers and open connections."""
        if self._httpd is None:
            return

        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # its handler closed it already

        self._httpd.server_close()
        self._thread.join(timeout=2)
        self._httpd = None

    def __enter__(self) -> "BackInStockServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def add_account(self, token: str, rows: list[dict], plan_ok: bool = True,
                    name: str | None = None) -> None:
        """Register a store; ``plan_ok=False`` makes every request a 403."""
        with self._lock:
            name = name or f"account-{len(self._accounts) + 1}"
            self._accounts[_token_key(token)] = _Account(name, list(rows), plan_ok)

    def set_rows(self, token: str, rows: list[dict]) -> None:
        """Replace a store's rows, even while a client is paging through them."""
        with self._lock:
            account = self._accounts[_token_key(token)]
            account.rows, account.views = list(rows), {}

    def script(self, token: str, responses: list[dict] | None) -> None:
        """Answer by page from ``responses``; ``None`` serves the rows again.

        Entries are ``{"page", "body"}`` or ``{"page", "status", "content_type",
        "text"}``, with optional ``headers`` and ``delay``. Several entries for
        one page answer in turn, the last one repeating; other pages get [].
        """
        by_page: dict[int, list[dict]] = {}
        for entry in responses or []:
            by_page.setdefault(entry["page"], []).append(dict(entry))

        with self._lock:
            key = _token_key(token)
            if key not in self._accounts:
                self._accounts[key] = _Account(f"account-{len(self._accounts) + 1}", [])
            self._accounts[key].script = None if responses is None else by_page

    def inject(self, fault: Fault) -> None:
        """Queue a fault for the next ``fault.times`` matching requests."""
        with self._lock:
            self._faults.append(dataclasses.replace(fault))

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def request_count(self) -> int:
        """How many requests were answered (or dropped) so far."""
        with self._lock:
            return len(self._log)

    def reset_log(self) -> None:
        """Forget every logged request."""
        with self._lock:
            self._log.clear()

    @property
    def hanging_requests(self) -> int:
        """How many requests a fault's ``hang`` is holding right now."""
        with self._lock:
            return self._hanging

    def _hang(self, seconds: float) -> bool:
        """``_pause`` for a fault's hang, counted in ``hanging_requests``."""
        if not seconds:
            return True
        with self._lock:
            self._hanging += 1
        try:
            return self._pause(seconds)
        finally:
            with self._lock:
                self._hanging -= 1

    def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when the server stopped meanwhile."""
        bounded = min(max(float(seconds or 0.0), 0.0), MAX_STALL_SECONDS)
        return not self._stopping.wait(bounded)

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _account_for(self, authorization: str | None) -> _Account | None:
        """The account whose token is the Basic auth user name, if any."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            credentials = base64.b64decode(encoded.strip(), validate=True)
            token = credentials.decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        with self._lock:
            return self._accounts.get(_token_key(token)) if token else None

    def _take_fault(self, page: int | None, account_name: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.page in (None, page) and fault.account in (None, account_name):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _next_scripted(self, account: _Account, page: int) -> dict | None:
        with self._lock:
            answers = (account.script or {}).get(page)
            if not answers:
                return None
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def _page_rows(self, account: _Account, query: _Query) -> list[dict]:
        """The rows of the asked page, after search, sort and behaviours."""
        view = self._view(account, query.q.lower(), query.sort, query.order)
        per_page = min(query.per_page or DEFAULT_PER_PAGE, self.max_per_page)
        page = 1 if self.ignore_page else query.page

        start = (page - 1) * per_page
        if start >= len(view) and self.repeat_last_page and view:
            start = (len(view) - 1) // per_page * per_page
        return view[start:start + per_page]

    def _view(self, account: _Account, needle: str, sort: str | None,
              order: str) -> list[dict]:
        """Searched and sorted rows, cached until the account's rows change."""
        key = (needle, sort, order if sort else "asc")
        with self._lock:
            rows, cached = account.rows, account.views.get(key)
        if cached is not None:
            return cached

        view = rows
        if needle:
            view = [row for row in view if needle in (row.get("sku") or "").lower()]
        if sort:
            # Missing values sort before all others, as NULLs first when asc.
            view = sorted(view, key=lambda row: (row.get(sort) is not None,
                                                 row.get(sort) or 0),
                          reverse=order == "desc")

        with self._lock:
            if account.rows is rows:  # rows moved meanwhile: don't cache stale
                if len(account.views) >= 16:
                    account.views.clear()
                account.views[key] = view
        return view


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers.

    It closes everything on ``stop()``, or by itself after ``lifetime`` seconds.
    """

    def __init__(self, lifetime: float = 60.0) -> None:
        self.lifetime = lifetime
        self.port = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Where the listener waits, e.g. ``http://127.0.0.1:50124``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "SilentServer":
        """Listen and accept in a daemon thread; returns self."""
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.05)  # wake often to notice stop()
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._accept_until_stopped, args=(listener,), daemon=True,
            name=f"bis-silent-server-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every accepted connection."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> "SilentServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _accept_until_stopped(self, listener: socket.socket) -> None:
        deadline = time.monotonic() + self.lifetime
        accepted: list[socket.socket] = []
        with listener:
            while not self._stopping.is_set() and time.monotonic() < deadline:
                try:
                    accepted.append(listener.accept()[0])
                except TimeoutError:
                    continue
        for connection in accepted:
            connection.close()
