"""The accounts file: validated, and never echoing what might be a secret."""

from pathlib import Path

import pytest

from bis_assets.accounts import (
    ACCOUNTS_FILE_ENV,
    DEMO_ACCOUNTS_FILE,
    AccountsFileError,
    load_accounts,
)
from bis_assets.client import ClientSettings
from bis_assets.errors import ConfigurationError
from bis_assets.resources import BackInStockResource


def accounts_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(text, encoding="utf-8")

    return path


def test_the_demo_accounts_file_is_valid():
    assert list(load_accounts(DEMO_ACCOUNTS_FILE)) == ["stanley1913", "camerarigz", "outdoor"]


def test_without_the_variable_no_file_is_guessed(monkeypatch):
    monkeypatch.delenv(ACCOUNTS_FILE_ENV, raising=False)

    with pytest.raises(AccountsFileError, match="BIS_ACCOUNTS_FILE is not set; point it"):
        load_accounts()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{id: 'a b', source_id: s, token_env: A_TOKEN}", "#1: id: Value error, an account id"),
        ("{id: \"x'; drop\", source_id: s, token_env: A_TOKEN}", "must match"),
        ("{id: a, source_id: s}", "#1 \\(id 'a'\\): token_env: Field required"),
        ("{id: a, source_id: s, token_env: PATH}", "token_env must name .* says TOKEN"),
        ("{id: a, source_id: s, token_env: A_TOKEN, extra: 1}", "extra: Extra inputs"),
        ("{id: a, source_id: \"s\\0\", token_env: A_TOKEN}", "source_id must not hold control"),
        ("{id: a, source_id: \"s\\u200b\", token_env: A_TOKEN}", "or invisible characters"),
        ("{id: a, source_id: '   ', token_env: A_TOKEN}", "source_id must not be blank"),
        ("{id: a, source_id: s, token_env: A_TOKEN, base_url: 'https://h.example '}", "spaces"),
    ],
)
def test_invalid_entries_are_named(tmp_path, entry, message):
    path = accounts_file(tmp_path, f"accounts:\n  - {entry}\n")

    with pytest.raises(AccountsFileError, match=message):
        load_accounts(path)


def test_an_empty_list_is_refused_rather_than_removing_every_account(tmp_path):
    path = accounts_file(tmp_path, "accounts: []\n")

    with pytest.raises(AccountsFileError, match="'accounts:' list is empty"):
        load_accounts(path)


def test_accounts_with_nothing_under_it_is_the_empty_list(tmp_path):
    path = accounts_file(tmp_path, "accounts:\n")

    with pytest.raises(AccountsFileError, match="'accounts:' list is empty"):
        load_accounts(path)


def test_a_yaml_error_names_its_place_but_quotes_no_line(tmp_path):
    text = "accounts:\n  - {id: a, source_id: s, token_env: tok-PASTED-s3cr3t\n"
    path = accounts_file(tmp_path, text)

    with pytest.raises(AccountsFileError) as refused:
        load_accounts(path)

    assert str(refused.value).startswith(f"accounts file {path} is not valid YAML at line 3")
    assert "s3cr3t" not in str(refused.value)


def test_a_token_of_only_whitespace_is_unset_and_a_newline_is_no_part_of_it(
    monkeypatch, api_server
):
    account = load_accounts(DEMO_ACCOUNTS_FILE)["outdoor"]
    api_server.add_account("tok-outdoor", [{"product_id": 1, "variant_no": 1}], name="outdoor")
    api = BackInStockResource(base_url=api_server.base_url, max_retries=0)
    monkeypatch.setenv("BIS_TOKEN_OUTDOOR", "   ")

    with pytest.raises(ConfigurationError, match="BIS_TOKEN_OUTDOOR is not set or empty"):
        api.client_for(account)

    monkeypatch.setenv("BIS_TOKEN_OUTDOOR", "tok-outdoor\n")
    with api.client_for(account) as client:
        assert client.fetch_page(1).rows == [{"product_id": 1, "variant_no": 1}]


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "accounts.yaml"
    path.write_bytes(b"accounts:\n  - {id: caf\xe9, source_id: s, token_env: A_TOKEN}\n")

    with pytest.raises(AccountsFileError, match=f"{path} is not UTF-8 text \\(byte 22\\)"):
        load_accounts(path)


def test_duplicate_ids_are_refused(tmp_path):
    entry = "{id: a, source_id: s, token_env: A_TOKEN}"
    path = accounts_file(tmp_path, f"accounts:\n  - {entry}\n  - {entry}\n")

    with pytest.raises(AccountsFileError, match="'a' appears twice"):
        load_accounts(path)


@pytest.mark.parametrize(
    ("field", "secret"),
    [
        ("token_env: shpat_1f2e3d4c5b6a", "shpat_1f2e3d4c5b6a"),
        ("token_env: SHPAT9F8E7D6C5B4A3", "SHPAT9F8E7D6C5B4A3"),
        ("token_env: A_TOKEN, base_url: 'https://user:pw-secret@host.example'", "pw-secret"),
        ("token_env: A_TOKEN, base_url: '127.0.0.1:tok-secret@host'", "tok-secret"),
        ("token_env: A_TOKEN, base_url: 'https://host.example/?token=tok-secret'", "tok-secret"),
        ("token_env: A_TOKEN, base_url: 'http://127.0.0.1:tok9secret'", "tok9secret"),
        ("token_env: A_TOKEN, base_url: 'https://app.example;toksecret'", "toksecret"),
        ("token_env: A_TOKEN, base_url: \"https://app.example/\\ntoksecret\"", "toksecret"),
        ("token_env: !tok_9f8e7dSECRET A_TOKEN", "SECRET"),
        ("token_env: *SECRET9f8e", "SECRET"),
        ("token_env: A_TOKEN, SECRET9f8e7d: 1", "SECRET"),
    ],
)
def test_a_secret_in_the_wrong_field_is_refused_without_being_echoed(tmp_path, field, secret):
    path = accounts_file(tmp_path, f"accounts:\n  - {{id: a, source_id: s, {field}}}\n")

    with pytest.raises(AccountsFileError) as refused:
        load_accounts(path)

    assert secret not in str(refused.value)


def test_a_missing_token_variable_names_the_account_and_the_variable(monkeypatch):
    monkeypatch.delenv("BIS_TOKEN_OUTDOOR", raising=False)
    account = load_accounts(DEMO_ACCOUNTS_FILE)["outdoor"]

    with pytest.raises(ConfigurationError, match="'outdoor'.*BIS_TOKEN_OUTDOOR is not set"):
        BackInStockResource().client_for(account)


def test_bad_api_settings_name_the_account(monkeypatch):
    monkeypatch.setenv("BIS_TOKEN_OUTDOOR", "tok")
    account = load_accounts(DEMO_ACCOUNTS_FILE)["outdoor"]

    with pytest.raises(ConfigurationError, match="'outdoor': API settings: per_page"):
        BackInStockResource(per_page=0).client_for(account)


def test_a_token_pasted_as_the_id_is_not_echoed(tmp_path):
    path = accounts_file(
        tmp_path, "accounts:\n  - {id: SECRETtok9f8e7d, source_id: s, token_env: A_TOKEN}\n"
    )

    with pytest.raises(AccountsFileError) as refused:
        load_accounts(path)

    assert "SECRETtok9f8e7d" not in str(refused.value)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:1234?key=SECRETQ", "http://127.0.0.1:SECRETQ", "http://SECRETQ host"],
)
def test_the_api_address_from_the_environment_is_held_to_the_same_rules(base_url):
    with pytest.raises(ValueError) as refused:
        ClientSettings(base_url=base_url)

    assert "SECRETQ" not in str(refused.value)


def test_a_token_outside_ascii_is_refused_naming_the_account_not_the_token(monkeypatch):
    account = load_accounts(DEMO_ACCOUNTS_FILE)["outdoor"]
    monkeypatch.setenv("BIS_TOKEN_OUTDOOR", "SECRET\u20actok")

    with pytest.raises(ConfigurationError) as refused:
        BackInStockResource().client_for(account)

    assert str(refused.value).startswith(
        "account 'outdoor': environment variable BIS_TOKEN_OUTDOOR holds characters outside"
    )
    assert "SECRET" not in str(refused.value)


def test_numeric_ids_are_read_as_their_digits(tmp_path):
    entry = "{id: 12345, source_id: 678, token_env: A_TOKEN}"
    path = accounts_file(tmp_path, f"accounts:\n  - {entry}\n")

    (account,) = load_accounts(path).values()

    assert (account.id, account.source_id) == ("12345", "678")
