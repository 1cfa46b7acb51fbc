"""Tests of the local Back In Stock API server, over real HTTP with requests."""

import itertools
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bis_assets.api_server import (
    BackInStockServer,
    Fault,
    SilentServer,
    iter_synthetic_rows,
    storefront_names,
    storefront_rows,
    synthetic_rows,
)

CATALOGS = Path(__file__).parents[1] / "bis_assets" / "api_server" / "catalogs"
TOKEN = "test-token-outdoor"
SECRET_TOKEN = "s3cr3t-t0ken-never-logged"
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PRICE = re.compile(r"^\d+\.\d{2}$")
SORT_FIELDS = [
    "notification_last_added_at", "notification_last_sent_at",
    "notifications_count", "sent_notifications_count", "unsent_notifications_count",
]


@pytest.fixture(scope="module")
def outdoor_rows() -> list[dict]:
    return storefront_rows("outdoor")


@pytest.fixture
def server(outdoor_rows):
    with BackInStockServer() as running:
        running.add_account(TOKEN, outdoor_rows, name="outdoor")
        yield running


def fetch(server, token=TOKEN, timeout=5.0, **params) -> requests.Response:
    url = f"{server.base_url}/api/variants"
    return requests.get(url, params=params, auth=(token, ""), timeout=timeout)


def fetch_all(server, token=TOKEN, **params) -> list[dict]:
    rows = []
    for page in itertools.count(1):
        batch = fetch(server, token=token, page=page, **params).json()
        if not batch:
            return rows
        rows.extend(batch)


# --- catalog -------------------------------------------------------------


def test_storefront_row_counts_match_the_catalogs():
    counts = {name: len(storefront_rows(name)) for name in storefront_names()}

    assert counts == {"camerarigz": 1615, "outdoor": 509, "stanley1913": 1310}
    assert sum(counts.values()) == 3434


def test_storefront_rows_copy_catalog_fields(outdoor_rows):
    catalog = json.loads((CATALOGS / "outdoor.products.json").read_text())
    pairs = [(p, v) for p in catalog["products"] for v in p["variants"]]

    for row, (product, variant) in zip(outdoor_rows, pairs, strict=True):
        assert row["sku"] == variant["sku"]
        assert row["product_id"] == product["id"]
        assert row["variant_no"] == variant["id"]
        assert row["unit_price"] == variant["price"]
        if variant["title"] == "Default Title":
            assert row["description"] == product["title"]
        else:
            assert row["description"] == f"{product['title']} {variant['title']}"


def test_storefront_rows_keep_duplicate_skus():
    skus = [row["sku"] for row in storefront_rows("stanley1913")]

    assert skus.count("10-10824-513") == 2
    assert len(skus) - len(set(skus)) == 2


def test_notification_figures_are_consistent(outdoor_rows):
    silent = [row for row in outdoor_rows if row["notifications_count"] == 0]

    assert 0 < len(silent) < len(outdoor_rows) / 2
    assert all(row["notification_last_added_at"] is None for row in silent)
    for row in outdoor_rows:
        total = row["unsent_notifications_count"] + row["sent_notifications_count"]
        assert row["notifications_count"] == total
        for field in ("notification_last_added_at", "notification_last_sent_at"):
            assert row[field] is None or ISO_MILLIS.match(row[field])
        assert (row["notification_last_sent_at"] is None) == (
            row["sent_notifications_count"] == 0)


def test_storefront_rows_are_deterministic_per_seed():
    first = json.dumps(storefront_rows("camerarigz", seed=5))
    again = json.dumps(storefront_rows("camerarigz", seed=5))
    other = storefront_rows("camerarigz", seed=6)

    assert first == again
    assert first != json.dumps(other)
    assert [row["sku"] for row in json.loads(first)] == [row["sku"] for row in other]


def test_unknown_storefront_is_refused():
    with pytest.raises(KeyError):
        storefront_rows("no-such-store")


def test_synthetic_rows_are_deterministic_and_messy():
    rows = synthetic_rows(5000, seed=7)
    skus = [row["sku"] for row in rows]
    descriptions = [row["description"] for row in rows]

    assert rows == synthetic_rows(5000, seed=7)
    assert rows == list(iter_synthetic_rows(5000, seed=7))
    assert rows != synthetic_rows(5000, seed=8)
    assert len(rows) == 5000
    assert None in skus
    assert len({sku for sku in skus if sku}) < sum(1 for sku in skus if sku)
    assert any(len(text) > 255 for text in descriptions)
    assert any(mark in text for text in descriptions for mark in "™’×£é")
    assert any(ord(char) > 0xFFFF for text in descriptions for char in text)
    assert {len(str(row["variant_no"])) for row in rows} == {13, 14}
    assert {len(str(row["product_id"])) for row in rows} == {13, 14}
    assert len({row["variant_no"] for row in rows}) == 5000
    assert all(PRICE.match(row["unit_price"]) for row in rows)


def test_synthetic_rows_stream_lazily():
    first_rows = list(itertools.islice(iter_synthetic_rows(10**9, seed=1), 3))

    assert first_rows == synthetic_rows(3, seed=1)


# --- authentication and answer shape --------------------------------------


def test_unknown_or_missing_token_is_401(server):
    missing = requests.get(f"{server.base_url}/api/variants", timeout=5)
    wrong = fetch(server, token="wrong")
    as_password = requests.get(
        f"{server.base_url}/api/variants", auth=("", TOKEN), timeout=5)

    assert [missing.status_code, wrong.status_code, as_password.status_code] == [401] * 3
    assert missing.json() == {"error": "Unauthorized"}
    assert missing.headers["WWW-Authenticate"].startswith("Basic")


def test_store_below_plan_is_403(server, outdoor_rows):
    server.add_account("small-store", outdoor_rows, plan_ok=False)

    answer = fetch(server, token="small-store")

    assert answer.status_code == 403
    assert "Medium plan" in answer.json()["error"]


def test_answer_is_a_bare_json_array_of_rows(server, outdoor_rows):
    answer = fetch(server, per_page=2)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == outdoor_rows[:2]
    assert set(answer.json()[0]) >= {
        "sku", "product_id", "variant_no", "description", "unit_price",
        "unsent_notifications_count", "sent_notifications_count",
        "notifications_count", "notification_last_added_at",
    }


# --- paging, search and sort ----------------------------------------------


def test_paging_walks_the_catalog_in_order(server, outdoor_rows):
    pages = [fetch(server, page=page, per_page=100).json() for page in range(1, 8)]

    assert [len(page) for page in pages] == [100, 100, 100, 100, 100, 9, 0]
    assert sum(pages, []) == outdoor_rows
    assert fetch(server, per_page=100).json() == pages[0]


def test_per_page_is_capped_by_the_server(server, outdoor_rows):
    assert len(fetch(server, per_page=1000).json()) == 250

    server.max_per_page = 7

    assert fetch(server, page=2, per_page=100).json() == outdoor_rows[7:14]


def test_q_matches_sku_substrings_case_insensitively(server, outdoor_rows):
    expected = [r for r in outdoor_rows if "lotus" in (r["sku"] or "").lower()]

    found = fetch_all(server, q="LoTuS", per_page=3)

    assert len(expected) >= 4
    assert found == expected


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("field", SORT_FIELDS)
def test_sort_orders_rows_stably(server, outdoor_rows, field, order):
    catalog_index = {id(row): n for n, row in enumerate(outdoor_rows)}
    by_variant = {row["variant_no"]: catalog_index[id(row)] for row in outdoor_rows}

    rows = fetch_all(server, sort=field, order=order, per_page=250)

    assert len(rows) == len(outdoor_rows)
    keys = [(row[field] is not None, row[field] or 0) for row in rows]
    for (key, row), (next_key, next_row) in itertools.pairwise(zip(keys, rows, strict=True)):
        assert key <= next_key if order == "asc" else key >= next_key
        if key == next_key:  # ties keep catalog order
            assert by_variant[row["variant_no"]] < by_variant[next_row["variant_no"]]


def test_nulls_sort_first_ascending(server):
    rows = fetch(server, sort="notification_last_sent_at", order="asc").json()

    assert rows[0]["notification_last_sent_at"] is None


@pytest.mark.parametrize("params", [
    {"sort": "price"}, {"sort": "notifications_count", "order": "up"},
    {"page": "two"}, {"page": 0}, {"per_page": -5},
])
def test_bad_parameters_are_400(server, params):
    answer = fetch(server, **params)

    assert answer.status_code == 400
    assert "error" in answer.json()


def test_other_paths_are_404(server):
    answer = requests.get(f"{server.base_url}/api/products", auth=(TOKEN, ""), timeout=5)

    assert (answer.status_code, answer.json()) == (404, {"error": "Not Found"})


def test_page_past_the_end_is_empty(server):
    assert fetch(server, page=99, per_page=10).json() == []


# --- behaviours ------------------------------------------------------------


def test_repeat_last_page_serves_the_last_rows_again(server, outdoor_rows):
    server.repeat_last_page = True

    past_end = fetch(server, page=99, per_page=100).json()

    assert past_end == outdoor_rows[500:]


def test_ignore_page_always_serves_page_one(server, outdoor_rows):
    server.ignore_page = True

    assert fetch(server, page=3, per_page=5).json() == outdoor_rows[:5]


def test_latency_slows_every_request(server):
    server.latency = 0.2
    started = time.monotonic()

    answer = fetch(server, per_page=1)

    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.2


def test_set_rows_moves_rows_under_a_paging_client(server, outdoor_rows):
    first_page = fetch(server, per_page=5).json()

    server.set_rows(TOKEN, outdoor_rows[100:])

    assert first_page == outdoor_rows[:5]
    assert fetch(server, page=2, per_page=5).json() == outdoor_rows[105:110]
    assert fetch(server, sort="notifications_count", per_page=250).status_code == 200


# --- scripted answers ------------------------------------------------------


def test_scripted_answers_by_page(server):
    server.script(TOKEN, [
        {"page": 1, "body": [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]},
        {"page": 2, "status": 200, "content_type": "text/html",
         "text": "<html>maintenance</html>", "headers": {"X-Reason": "upgrade"}},
        {"page": 3, "body": {"error": "boom"}, "status": 500, "delay": 0.1},
    ])

    first = fetch(server, page=1, per_page=1)
    second = fetch(server, page=2)
    started = time.monotonic()
    third = fetch(server, page=3)

    assert first.json() == [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]
    assert second.status_code == 200
    assert second.headers["Content-Type"] == "text/html"
    assert second.headers["X-Reason"] == "upgrade"
    assert second.text == "<html>maintenance</html>"
    assert (third.status_code, third.json()) == (500, {"error": "boom"})
    assert time.monotonic() - started >= 0.1
    assert fetch(server, page=4).json() == []


def test_bare_status_script_and_unscripted_account(server):
    server.script("fresh-token", [{"page": 1, "status": 401}])

    answer = fetch(server, token="fresh-token")

    assert (answer.status_code, answer.json()) == (401, {"error": "Unauthorized"})
    assert fetch(server, token="fresh-token", page=2).json() == []
    assert fetch(server).status_code == 200


def test_repeated_script_pages_answer_in_turn(server):
    server.script(TOKEN, [
        {"page": 1, "status": 502, "text": ""},
        {"page": 1, "body": [{"sku": "x"}]},
    ])

    statuses = [fetch(server).status_code for _ in range(3)]

    assert statuses == [502, 200, 200]
    server.script(TOKEN, None)
    assert len(fetch(server, per_page=250).json()) == 250


# --- faults ----------------------------------------------------------------


def test_fault_with_retry_after_then_recovery(server):
    server.inject(Fault(status=429, times=2, retry_after="1.5"))

    answers = [fetch(server, per_page=1) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "1.5"
    assert answers[0].json() == {"error": "Too Many Requests"}
    assert "Retry-After" not in answers[2].headers


@pytest.mark.parametrize("retry_after", ["Wed, 21 Oct 2015 07:28:00 GMT", "9999999999"])
def test_retry_after_is_sent_verbatim(server, retry_after):
    server.inject(Fault(status=503, retry_after=retry_after))

    assert fetch(server).headers["Retry-After"] == retry_after


@pytest.mark.parametrize("body, content_type", [
    ("<html><body>Bad gateway</body></html>", "text/html"),
    ("", "application/json"),
    ('[{"sku": "trunc', "application/json"),
    ('{"error": "Internal"}', "application/json"),
])
def test_fault_bodies_are_raw_text(server, body, content_type):
    server.inject(Fault(status=502, body=body, content_type=content_type))

    answer = fetch(server)

    assert answer.status_code == 502
    assert answer.text == body
    assert answer.headers["Content-Type"] == content_type


def test_fault_with_ok_status_and_bad_body(server):
    server.inject(Fault(status=200, body='[{"sku": "tru'))

    with pytest.raises(ValueError):
        fetch(server).json()


def test_fault_matches_only_its_page(server, outdoor_rows):
    server.inject(Fault(status=500, page=2))

    first = fetch(server, page=1, per_page=5)
    second = fetch(server, page=2, per_page=5)
    retried = fetch(server, page=2, per_page=5)

    assert first.json() == outdoor_rows[:5]
    assert second.status_code == 500
    assert retried.json() == outdoor_rows[5:10]


def test_fault_matches_only_its_account(server, outdoor_rows):
    server.add_account("other", outdoor_rows, name="other")
    server.inject(Fault(status=500, account="other"))

    assert fetch(server).status_code == 200
    assert fetch(server, token="other").status_code == 500


def test_reset_fault_breaks_the_connection(server):
    server.inject(Fault(reset=True))

    with pytest.raises(requests.ConnectionError):
        fetch(server)

    assert fetch(server).status_code == 200
    assert [record.status for record in server.requests] == [None, 200]


def test_hang_fault_times_the_client_out(server):
    server.inject(Fault(hang=3))

    with pytest.raises(requests.ReadTimeout):
        fetch(server, timeout=0.3)


def test_ok_fault_with_hang_is_a_slow_normal_page(server, outdoor_rows):
    server.inject(Fault(status=200, hang=0.2))
    started = time.monotonic()

    answer = fetch(server, per_page=3)

    assert time.monotonic() - started >= 0.2
    assert answer.json() == outdoor_rows[:3]


def test_delay_fault_stalls_between_headers_and_body(server, outdoor_rows):
    server.inject(Fault(status=200, delay=0.3))
    url = f"{server.base_url}/api/variants"

    with requests.get(url, auth=(TOKEN, ""), stream=True, timeout=5) as answer:
        headers_at = time.monotonic()
        body = answer.json()
        body_at = time.monotonic()

    assert answer.status_code == 200
    assert body == outdoor_rows[:50]
    assert body_at - headers_at >= 0.25


def test_stop_returns_promptly_while_a_handler_hangs(outdoor_rows):
    server = BackInStockServer().start()
    server.add_account(TOKEN, outdoor_rows)
    server.inject(Fault(hang=60))
    errors = []

    def hanging_client():
        try:
            fetch(server, timeout=10)
        except requests.RequestException as error:
            errors.append(error)

    client = threading.Thread(target=hanging_client)
    client.start()
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    stop_took = time.monotonic() - started
    client.join(timeout=5)

    assert stop_took < 2
    assert not client.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)


# --- request log and secrecy -----------------------------------------------


def test_request_log_records_without_the_token(server, outdoor_rows, capfd):
    server.add_account(SECRET_TOKEN, outdoor_rows, name="secret-store")
    fetch(server, token=SECRET_TOKEN, page=2, per_page=10)
    fetch(server, token="nope")

    records = server.requests

    assert server.request_count == 2
    assert [(r.page, r.per_page, r.status, r.account) for r in records] == [
        (2, 10, 200, "secret-store"), (1, None, 401, None)]
    assert records[0].time <= records[1].time <= time.monotonic()
    out, err = capfd.readouterr()
    for text in (repr(records), repr(vars(server)), out, err):
        assert SECRET_TOKEN not in text
        assert "Authorization" not in text
    server.reset_log()
    assert server.request_count == 0 and server.requests == []


def test_concurrent_clients_get_their_own_rows(server):
    stores = {name: storefront_rows(name) for name in storefront_names()}
    for name, rows in stores.items():
        server.add_account(f"token-{name}", rows, name=name)

    def sync(name):
        return name, fetch_all(server, token=f"token-{name}", per_page=250)

    with ThreadPoolExecutor(max_workers=3) as pool:
        fetched = dict(pool.map(sync, stores))

    assert fetched == stores
    assert sum(len(rows) for rows in fetched.values()) == 3434


# --- silent server -----------------------------------------------------------


def test_silent_server_never_answers():
    with SilentServer() as silent:
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            requests.get(silent.base_url, timeout=0.3)

    assert time.monotonic() - started < 2


def test_silent_server_stops_by_itself():
    silent = SilentServer(lifetime=0.2).start()
    time.sleep(0.5)

    with pytest.raises(requests.ConnectionError):
        requests.get(silent.base_url, timeout=1)
    silent.stop()
