"""HTTP faults: each retried within bounds or failed clearly, nothing half-loaded."""

import base64
import email.utils
import logging
import time

import pytest
from dagster import DagsterEventType

from bis_assets.api_server import Fault, SilentServer
from bis_assets.api_server.catalog import storefront_rows
from bis_assets.client import BackInStockClient, CappedRetry, ClientSettings
from bis_assets.errors import ApiError, AuthenticationError, RetryableApiError
from bis_assets_tests.harness import case, table_rows

ROWS = storefront_rows("outdoor")[:30]


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry waits urllib3 asked for, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(CappedRetry, "pause", staticmethod(recorded.append))

    return recorded


def make_client(server, rows=ROWS, token="tok-http", **settings) -> BackInStockClient:
    server.add_account(token, rows, name="http")
    settings = {"per_page": 10, "max_retries": 3, "backoff_factor": 0.5} | settings

    return BackInStockClient("acct_http", token, ClientSettings(server.base_url, **settings))


def read_all(client: BackInStockClient) -> list[dict]:
    return [row for page in client.iter_pages() for row in page.rows]


def failed_sync_leaves_rows_alone(harness, database_url, fault: Fault, **settings) -> str:
    """Sync once, then again with ``fault`` and ``settings``; returns the run's error."""
    harness.add_account("acct_a", ROWS)
    harness.api_settings |= {"per_page": 10, "max_retries": 1}
    harness.sync("acct_a")
    before = table_rows(database_url)

    harness.add_account("acct_a", [row | {"unsent_notifications_count": 1} for row in ROWS])
    harness.server.inject(fault)
    harness.api_settings |= settings
    result = harness.sync("acct_a", raise_on_error=False)

    assert not result.success
    assert table_rows(database_url) == before
    return harness.failure(result)


def test_html_on_200(harness, database_url, waits):
    harness.add_account("acct_a", ROWS)
    harness.sync("acct_a")
    before = table_rows(database_url)
    harness.add_account("acct_a", responses=case("html-on-200")["responses"])

    result = harness.sync("acct_a", raise_on_error=False)

    message = harness.failure(result)
    assert "account 'acct_a'" in message
    assert "status 200" in message and "'text/html'" in message
    assert f"{harness.server.base_url}/api/variants?page=1" in message
    assert "Down for maintenance" in message
    assert table_rows(database_url) == before


def test_object_instead_of_array(harness, database_url, waits):
    given = case("object-instead-of-array")
    harness.add_account("acct_a", ROWS)
    harness.sync("acct_a")
    before = table_rows(database_url)
    harness.add_account("acct_a", responses=given["responses"])
    harness.api_settings = {"per_page": given["per_page"]}

    result = harness.sync("acct_a", raise_on_error=False)

    message = harness.failure(result)
    assert "expected a JSON array, got an object with keys ['error']" in message
    assert "page 2" in message
    assert table_rows(database_url) == before


def test_silent_server(waits):
    timeouts = case("silent-server")["timeout_s"]
    with SilentServer(lifetime=30) as silent:
        settings = ClientSettings(
            silent.base_url,
            connect_timeout=timeouts["connect"],
            read_timeout=timeouts["read"],
            max_retries=1,
        )
        client = BackInStockClient("acct_silent", "tok-silent", settings)
        started = time.monotonic()

        with pytest.raises(RetryableApiError, match="account 'acct_silent'.*[Tt]imed? ?out"):
            read_all(client)

    assert time.monotonic() - started < 3.5


def test_token_never_leaks(harness, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    given = case("token-never-leaks")
    harness.add_account("acct_a", responses=given["responses"], token=given["token"])
    secrets = ["tok_FAKE123", base64.b64encode(b"tok_FAKE123:").decode()]
    assert secrets[1].startswith("dG9rX0ZBS0UxMjM6")

    result = harness.sync("acct_a", raise_on_error=False)

    error = harness.failure(result)
    assert "account 'acct_a': the token was refused (401)" in error
    assert harness.server.request_count == 1  # a 401 is not retried
    records = harness.instance.all_logs(result.run_id)
    materializations = harness.instance.all_logs(
        result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    )
    captured = capfd.readouterr()
    everywhere = "\n".join(
        [error, repr(records), repr(materializations), captured.out, captured.err]
        + [record.getMessage() for record in caplog.records]
    )
    assert "acct_a" in everywhere
    for secret in secrets:
        assert secret not in everywhere


def test_401_and_403_are_reported_for_the_account_and_not_retried(api_server, waits):
    client = make_client(api_server)
    api_server.add_account("tok-low-plan", ROWS, plan_ok=False, name="low")
    wrong = BackInStockClient("acct_wrong", "tok-nobody", ClientSettings(api_server.base_url))
    low = BackInStockClient("acct_low", "tok-low-plan", ClientSettings(api_server.base_url))

    with pytest.raises(AuthenticationError, match="account 'acct_wrong'.*refused \\(401\\)"):
        read_all(wrong)
    with pytest.raises(AuthenticationError, match="account 'acct_low'.*403.*Medium"):
        read_all(low)

    assert api_server.request_count == 2
    assert waits == []
    assert read_all(client) == ROWS


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [("2", 2.0), ("1.5", 1.5), ("0", 0.0), (None, 0.0), ("soon", 0.0)],
)
def test_429_waits_as_the_server_asks(api_server, waits, retry_after, expected_wait):
    client = make_client(api_server)
    api_server.inject(Fault(429, page=2, retry_after=retry_after))

    assert read_all(client) == ROWS
    assert waits == [expected_wait]


def test_429_with_an_http_date_waits_until_then(api_server, waits):
    client = make_client(api_server)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    api_server.inject(Fault(429, page=1, retry_after=when))

    assert read_all(client) == ROWS
    assert len(waits) == 1 and 27 <= waits[0] <= 31


def test_429_asking_an_absurd_wait_fails_fast_and_retryable(api_server, waits):
    client = make_client(api_server, max_retry_after=60)
    api_server.inject(Fault(429, page=1, retry_after="86400"))

    with pytest.raises(RetryableApiError, match="Retry-After of 86400 s exceeds the cap of 60 s"):
        read_all(client)
    assert waits == []


def test_429_that_never_ends_fails_after_the_retries(api_server, waits):
    client = make_client(api_server, max_retries=2)
    api_server.inject(Fault(429, times=10, retry_after="1"))

    with pytest.raises(RetryableApiError, match="account 'acct_http'.*429"):
        read_all(client)
    assert waits == [1.0, 1.0]


def test_a_burst_of_5xx_is_retried_with_backoff(api_server, waits):
    client = make_client(api_server, max_retries=4)
    api_server.inject(Fault(503, times=2, page=2))
    api_server.inject(Fault(502, times=1, page=2))

    assert read_all(client) == ROWS
    assert waits == [0.0, 1.0, 2.0]


def test_a_burst_of_retries_keeps_within_the_request_budget(api_server, waits):
    client = make_client(api_server, max_retries=6, requests_per_second=5.0)
    api_server.inject(Fault(503, times=6, page=1))

    with client:
        assert client.fetch_page(1).rows == ROWS[:10]

    starts = sorted(record.time for record in api_server.requests)
    busiest = max(
        sum(1 for other in starts if start <= other < start + 1.0) for start in starts
    )
    assert len(starts) == 7
    assert busiest <= 5  # unpaced, all seven would start within milliseconds


def test_connection_resets_are_retried(api_server, waits):
    client = make_client(api_server)
    api_server.inject(Fault(reset=True, times=2, page=3))

    assert read_all(client) == ROWS


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "not JSON"),
        ('[{"sku": "a"', "not JSON"),
        ('"just text"', "expected a JSON array, got a JSON str"),
        ("[1, 2]", "expected an array of objects"),
    ],
)
def test_broken_bodies_fail_clearly(api_server, waits, body, message):
    client = make_client(api_server)
    api_server.inject(Fault(200, page=2, body=body))

    with pytest.raises(ApiError, match=f"account 'acct_http'.*{message}"):
        read_all(client)


def test_unexpected_status_names_the_page(api_server, waits):
    client = make_client(api_server)
    api_server.inject(Fault(418, page=1, body="teapot"))

    with pytest.raises(ApiError, match="unexpected status 418; page 1 .*'teapot'"):
        read_all(client)


def test_a_5xx_storm_fails_midway_and_leaves_the_rows(harness, database_url, waits):
    message = failed_sync_leaves_rows_alone(harness, database_url, Fault(503, page=2, times=5))

    assert "account 'acct_a'" in message and "page 2" in message


def test_a_hang_fails_midway_and_leaves_the_rows(harness, database_url, waits):
    hang = Fault(200, page=3, hang=5, times=3)
    message = failed_sync_leaves_rows_alone(harness, database_url, hang, read_timeout=0.5)

    assert "account 'acct_a'" in message and "page 3" in message


def test_a_bad_body_fails_midway_and_leaves_the_rows(harness, database_url, waits):
    html = Fault(200, page=2, body="<html>oops</html>", content_type="text/html")
    message = failed_sync_leaves_rows_alone(harness, database_url, html)

    assert "'text/html'" in message and "page 2" in message


def test_a_401_midway_fails_and_leaves_the_rows(harness, database_url, waits):
    message = failed_sync_leaves_rows_alone(harness, database_url, Fault(401, page=2))

    assert "account 'acct_a': the token was refused (401)" in message
    assert harness.token("acct_a") not in message


def test_running_past_the_page_cap_fails_and_leaves_the_rows(harness, database_url, waits):
    unused = Fault(200, page=99)
    message = failed_sync_leaves_rows_alone(harness, database_url, unused, max_pages=2)

    assert "account 'acct_a': more than 2 pages" in message


def test_one_failing_account_of_a_backfill_changes_no_account(harness, database_url, waits):
    harness.add_account("acct_a", ROWS[:10])
    harness.add_account("acct_b", ROWS[10:])
    harness.sync("acct_a", "acct_b")
    before = table_rows(database_url)
    harness.add_account("acct_a", [row | {"sent_notifications_count": 3} for row in ROWS[:10]])
    harness.server.inject(Fault(503, times=10, account="acct_b"))

    result = harness.sync("acct_a", "acct_b", raise_on_error=False)

    assert not result.success
    assert "account 'acct_b'" in harness.failure(result)
    assert table_rows(database_url) == before


def test_the_client_repr_names_no_token(api_server):
    client = make_client(api_server, token="tok-in-repr")

    assert "tok-in-repr" not in repr(client) and "acct_http" in repr(client)


def test_a_token_echoed_in_a_body_is_masked(api_server, waits):
    token = "tok-echoed-secret"
    client = make_client(api_server, token=token)
    basic = base64.b64encode(f"{token}:".encode()).decode()
    api_server.inject(Fault(418, page=1, body=f"no tea for {token} ({basic})"))

    with pytest.raises(ApiError) as raised:
        read_all(client)

    assert "no tea for *** (***)" in str(raised.value)
    assert token not in str(raised.value) and basic not in str(raised.value)


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("x" * 185 + "tok/SECRET&0123'q\\", "x" * 15 + "***"),
        ('{"error": "bad token tok\\/SECRET&0123\'q\\\\"}', "bad token ***"),
        ("token=tok%2FSECRET%260123%27q%5C", "token=***"),
        ("<p>tok/SECRET&amp;0123&#x27;q\\</p>", "<p>***</p>"),
    ],
    ids=["cut off by the preview", "JSON with escaped slashes", "URL-encoded", "HTML"],
)
def test_a_token_echoed_in_any_spelling_is_masked(api_server, waits, body, shown):
    token = "tok/SECRET&0123'q\\"
    client = make_client(api_server, token=token)
    api_server.inject(Fault(418, page=1, body=body))

    with pytest.raises(ApiError) as raised:
        read_all(client)

    assert shown in str(raised.value).replace("\\\\", "\\")
    assert "SECRET" not in str(raised.value)


def test_an_api_address_urllib_cannot_read_is_not_quoted():
    with pytest.raises(ValueError) as refused:
        ClientSettings(base_url="https://user:tok[SECRETPART]x@app.backinstock.org")

    assert "SECRETPART" not in str(refused.value)
