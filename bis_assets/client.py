"""A client for the Back In Stock variants report (``GET /api/variants``).

Knows nothing of Dagster or pandas: it pages through one account's report and
yields the rows page by page. Retries, backoff and ``Retry-After`` live in
urllib3's ``Retry`` behind a ``requests`` session; the token travels only in
the Basic-auth header, never in a URL, a message or a repr.
"""

import base64
import email.utils
import html
import json
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bis_assets.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    PaginationError,
    RetryableApiError,
)

DEFAULT_BASE_URL = "https://app.backinstock.org"
API_BASE_URL_ENV = "BIS_API_BASE_URL"  # overrides DEFAULT_BASE_URL
VARIANTS_PATH = "/api/variants"
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
BODY_PREVIEW_CHARS = 200
PACING_MARGIN = 0.02

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientSettings:
    """How the client talks to the API; every field has a safe default."""

    base_url: str = DEFAULT_BASE_URL
    per_page: int = 250
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    max_retry_after: float = 120.0
    max_pages: int = 10_000
    max_in_flight: int = 8
    requests_per_second: float = 10.0

    def __post_init__(self) -> None:
        check_base_url(self.base_url)
        if self.per_page < 1 or self.max_pages < 1 or self.max_in_flight < 1:
            raise ValueError("per_page, max_pages and max_in_flight must be positive")
        if self.requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")


def check_base_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is a plain http(s) address of a host.

    The messages never quote the URL: a malformed one may hold a token, and
    the address is logged and put in errors once accepted.
    """
    if url != url.strip() or any(ord(character) < 33 for character in url):
        raise ValueError("base_url must not hold spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # urllib quotes what it could not read
        raise ValueError("base_url is not a readable http:// or https:// address") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError("base_url must be an http:// or https:// address")
    if "@" in parts.netloc:
        raise ValueError("base_url must not hold credentials; tokens go in token variables")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not hold a query or fragment (?… or #…)")
    if not _HOST.fullmatch(hostname):
        raise ValueError("base_url must name a host by letters, digits, . and -, or an IP")
    try:
        parts.port  # noqa: B018 - urlsplit reads the port only when asked
    except ValueError:
        raise ValueError("base_url has a port that is not a number from 0 to 65535") from None


_HOST = re.compile(r"[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+")  # a name, IPv4, or IPv6 unbracketed


class RetryAfterTooLong(Exception):
    """The server asked us to wait longer than we are willing to."""

    def __init__(self, seconds: float, cap: float) -> None:
        self.seconds = seconds
        self.cap = cap
        super().__init__(f"Retry-After of {seconds:.0f} s exceeds the cap of {cap:.0f} s")


class CappedRetry(Retry):
    """urllib3's ``Retry`` that reads fractional ``Retry-After`` and caps the wait.

    urllib3 rejects ``Retry-After: 1.5`` as invalid and would honour six hours;
    a nightly sync of many stores should rather fail one account quickly.
    After its wait, a retry also waits its turn with the client's pacer, so
    a burst of retries stays within the request budget too.
    """

    pause = staticmethod(time.sleep)  # tests replace this to skip the waiting

    def __init__(self, *args: Any, pacer: "RequestPacer | None" = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacer = pacer

    def new(self, **kwargs: Any) -> "CappedRetry":
        # urllib3 makes a new Retry at every attempt, from its own arguments.
        retry = super().new(**kwargs)
        retry.pacer = self.pacer

        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        seconds = _seconds_from_retry_after(retry_after)
        if seconds > self.retry_after_max:
            raise RetryAfterTooLong(seconds, self.retry_after_max)

        return seconds

    def sleep(self, response: Any = None) -> None:
        wait = None
        if self.respect_retry_after_header and response is not None:
            wait = self.get_retry_after(response)

        self.pause(wait if wait else self.get_backoff_time())
        if self.pacer is not None:
            self.pacer.wait_turn()


def _seconds_from_retry_after(value: str) -> float:
    """Seconds to wait for a ``Retry-After`` value; 0 (plain backoff) if unreadable."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return seconds if math.isfinite(seconds) and seconds > 0 else 0.0

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        return 0.0

    return max(when.timestamp() - time.time(), 0.0)


def redact_url(url: str) -> str:
    """``url`` without any user information, safe to put in a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host

    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@dataclass(frozen=True)
class Page:
    """One page of the report as the server sent it."""

    number: int
    rows: list[dict[str, Any]]
    seconds: float


class RequestPacer:
    """Spaces request starts so that no more than ``per_second`` begin each second.

    The spacing keeps a margin of ``PACING_MARGIN``: starts spaced exactly
    1/``per_second`` apart reach the server a millisecond early or late, and
    any second it counts could then hold one request too many.
    """

    def __init__(self, per_second: float) -> None:
        self._interval = (1.0 + PACING_MARGIN) / per_second
        self._next_start = 0.0
        self._lock = threading.Lock()

    def wait_turn(self) -> None:
        # The lock is held while sleeping and the next turn counts from when
        # this one really began: a thread that wakes late delays the others
        # instead of letting them start right behind it.
        with self._lock:
            wait = self._next_start - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._next_start = time.monotonic() + self._interval


class BackInStockClient:
    """Reads one account's variants report, page by page."""

    def __init__(self, account_id: str, token: str, settings: ClientSettings) -> None:
        if not token:
            raise ConfigurationError(account_id, "the API token is empty")
        self.account_id = account_id
        self.settings = settings
        self._url = settings.base_url.rstrip("/") + VARIANTS_PATH
        self._pacer = RequestPacer(settings.requests_per_second)
        self._session = self._build_session(token)
        self._secrets = _spellings(token)

    def __repr__(self) -> str:
        return f"BackInStockClient(account_id={self.account_id!r}, url={self._url!r})"

    def _build_session(self, token: str) -> requests.Session:
        retry = CappedRetry(
            total=self.settings.max_retries,
            backoff_factor=self.settings.backoff_factor,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods={"GET"},
            respect_retry_after_header=True,
            retry_after_max=self.settings.max_retry_after,
            pacer=self._pacer,
        )
        adapter = HTTPAdapter(
            max_retries=retry, pool_maxsize=self.settings.max_in_flight
        )
        session = requests.Session()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # With auth set, requests never reads ~/.netrc; proxies still come from
        # the environment, as users behind one expect.
        session.auth = (token, "")

        return session

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "BackInStockClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch_page(
        self, number: int, per_page: int | None = None, sort: str | None = None
    ) -> Page:
        """One page of the report, newest first by ``sort`` if given.

        Raises an ``ApiError`` that names the account.
        """
        params = {"page": number, "per_page": per_page or self.settings.per_page}
        if sort:
            params |= {"sort": sort, "order": "desc"}
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        self._pacer.wait_turn()
        started = time.monotonic()

        try:
            response = self._session.get(self._url, params=params, timeout=timeout)
        except RetryAfterTooLong as exc:
            raise self._error(
                RetryableApiError, f"rate limited on page {number}: {exc}; run again later"
            ) from None
        except requests.RequestException as exc:
            raise self._error(
                RetryableApiError,
                f"page {number} failed after {self.settings.max_retries} retries: "
                f"{type(exc).__name__}: {exc}",
            ) from None

        rows = self._rows_from(response, number)

        return Page(number, rows, time.monotonic() - started)

    def _rows_from(self, response: requests.Response, number: int) -> list[dict[str, Any]]:
        where = f"page {number} ({redact_url(response.url)})"
        status = response.status_code
        if status in (401, 403):
            reason = (
                "the token was refused (401): check the account's token variable"
                if status == 401
                else "access forbidden (403): the store's plan may not include the "
                "API (Medium or above is required)"
            )
            raise self._error(AuthenticationError, f"{reason}; {where}")
        if status in RETRIED_STATUSES:
            raise self._error(RetryableApiError, f"status {status} outlasted retries; {where}")
        if status != 200:
            raise self._error(
                ApiError, f"unexpected status {status}; {where}: {self._preview(response)}"
            )

        content_type = response.headers.get("Content-Type", "")
        try:
            # Decimals keep prices exact; NaN and Infinity become Decimals too,
            # so they count as invalid values instead of passing for missing.
            body = response.json(parse_float=Decimal, parse_constant=Decimal)
        except ValueError:
            raise self._error(
                ApiError,
                f"status 200 with content type {content_type!r} that is not JSON; "
                f"{where}: {self._preview(response)}",
            ) from None
        if not isinstance(body, list):
            raise self._error(ApiError, f"expected a JSON array, got {_describe(body)}; {where}")
        if not all(isinstance(row, dict) for row in body):
            raise self._error(ApiError, f"expected an array of objects; {where}")

        return body

    def _error(self, kind: type[ApiError], message: str) -> ApiError:
        return kind(self.account_id, self._masked(message))

    def _masked(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")

        return text

    def _preview(self, response: requests.Response) -> str:
        """The body's start for a message; the token masked before it is cut."""
        text = self._masked(response.text)[:BODY_PREVIEW_CHARS]

        return repr(text) if text else "an empty body"

    def iter_pages(self) -> Iterator[Page]:
        """Every page of the report in page order, until the data ends.

        The report has no total and no next link, and servers differ: some cap
        the page size below what was asked, some answer past the end with the
        last page again. So the end is an empty page or a page equal to the
        one before, never merely a short page. Pages are fetched a window at a
        time: the window starts at one page and doubles up to ``max_in_flight``
        while pages come back full, so a small report wastes no requests. At
        ``max_in_flight`` the window slides: the next page is asked for as
        soon as the oldest comes back, so a large report keeps every request
        slot busy instead of waiting for the slowest page of each window.
        """
        window = 1
        next_page = 1
        in_flight: deque[Future[Page]] = deque()
        previous: list[dict[str, Any]] = []
        longest = 0

        with ThreadPoolExecutor(self.settings.max_in_flight) as pool:
            try:
                while True:
                    next_page = self._ask_for_pages(pool, in_flight, next_page, window)
                    if not in_flight:
                        raise self._error(
                            PaginationError,
                            f"more than {self.settings.max_pages} pages; raise max_pages "
                            "if the account is really that large",
                        )

                    page = in_flight.popleft().result()
                    if page.rows and page.rows == previous:
                        self._check_page_is_honoured(page)
                        log.info(
                            "account %s: page %d repeats page %d; taking it as the end",
                            self.account_id, page.number, page.number - 1,
                        )
                    if not page.rows or page.rows == previous:
                        return
                    yield page

                    previous = page.rows
                    longest = max(longest, len(page.rows))
                    if len(page.rows) < longest:
                        window = 1  # likely the last page: ask for one more, not a window
                    elif not in_flight:
                        window = min(window * 2, self.settings.max_in_flight)
            finally:
                _cancel(in_flight)

    def _ask_for_pages(
        self, pool: ThreadPoolExecutor, in_flight: deque, first: int, window: int
    ) -> int:
        """Ask for pages from ``first`` while the window has room; the next to ask."""
        if in_flight and window < self.settings.max_in_flight:
            return first  # a growing window is asked for whole, once the last came back
        while len(in_flight) < window and first <= self.settings.max_pages:
            in_flight.append(pool.submit(self.fetch_page, first))
            first += 1

        return first

    def _check_page_is_honoured(self, repeated: Page) -> None:
        """Tell a server that ignores ``page`` from a report that fits on one page.

        Both answer page 2 with page 1 again; asked for one row a page, the
        first keeps answering the first row, the second the next one.
        """
        if repeated.number != 2 or len(repeated.rows) < 2:
            return
        if self.fetch_page(2, per_page=1).rows == repeated.rows[:1]:
            raise self._error(
                PaginationError,
                "the server answers every page with the first one (it ignores the "
                "page parameter), so only the first page could be read",
            )


def _cancel(futures: Iterable[Future]) -> None:
    for future in futures:
        future.cancel()


def _spellings(token: str) -> tuple[str, ...]:
    """The ways a server may echo ``token`` in a body we quote: longest first."""
    basic = base64.b64encode(f"{token}:".encode()).decode()
    spellings = {
        token,
        basic,
        basic.rstrip("="),
        json.dumps(token)[1:-1],
        json.dumps(token)[1:-1].replace("/", "\\/"),  # as PHP escapes JSON
        quote(token, safe=""),
        quote_plus(token),
        html.escape(token),
        repr(token)[1:-1],
    }

    return tuple(sorted(spellings, key=len, reverse=True))


def _describe(body: object) -> str:
    if isinstance(body, dict):
        return f"an object with keys {sorted(body)[:10]}"

    return f"a JSON {type(body).__name__}"

