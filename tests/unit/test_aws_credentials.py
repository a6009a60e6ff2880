"""AWS credentials: validated, stored 0600 and atomically, never shown or logged."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from lablink_core.aws_credentials import FILE_NAME, AwsCredentials, AwsCredentialStore
from lablink_core.errors import InvalidInput

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEJr//////////wEaDExampleSessionToken+/="


def test_parse_accepts_real_shaped_keys_and_strips_whitespace() -> None:
    credentials = AwsCredentials.parse(f" {KEY_ID}\n", f"{SECRET} ", "")
    assert credentials == AwsCredentials(KEY_ID, SECRET, None)


@pytest.mark.parametrize(
    ("key_id", "secret", "field"),
    [
        ("akiaiosfodnn7example", SECRET, "access_key_id"),  # lower case
        ("AKIA123", SECRET, "access_key_id"),  # too short
        ("AKIA IOSFODNN7EXAMPLE", SECRET, "access_key_id"),
        ("A" * 129, SECRET, "access_key_id"),
        (KEY_ID, "short", "secret_access_key"),
        (KEY_ID, "has a space in the middle!!", "secret_access_key"),
        (KEY_ID, "tab\tinside-the-secret-value", "secret_access_key"),
        (KEY_ID, "x" * 129, "secret_access_key"),
        (KEY_ID, "", "secret_access_key"),
    ],
)
def test_parse_refuses_malformed_values_without_echoing_them(
    key_id: str, secret: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        AwsCredentials.parse(key_id, secret)
    assert caught.value.field == field
    assert secret not in caught.value.message or not secret
    assert key_id.strip() not in caught.value.message


def test_parse_refuses_a_malformed_session_token() -> None:
    with pytest.raises(InvalidInput) as caught:
        AwsCredentials.parse(KEY_ID, SECRET, "has spaces in it, not a token")
    assert caught.value.field == "session_token"


def test_repr_str_and_describe_show_only_the_last_four_characters() -> None:
    credentials = AwsCredentials(KEY_ID, SECRET, TOKEN)
    for text in (repr(credentials), str(credentials), f"{credentials}", credentials.describe()):
        assert SECRET not in text
        assert TOKEN not in text
        assert KEY_ID not in text
    assert credentials.describe() == "set, key id ending MPLE"


def test_as_env_names_the_variables_terraform_reads() -> None:
    assert AwsCredentials(KEY_ID, SECRET).as_env() == {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    assert AwsCredentials(KEY_ID, SECRET, TOKEN).as_env()["AWS_SESSION_TOKEN"] == TOKEN


def test_save_creates_a_0600_file_even_with_a_permissive_umask(tmp_path: Path) -> None:
    store = AwsCredentialStore(tmp_path / "data")
    old_umask = os.umask(0)
    try:
        store.save(AwsCredentials(KEY_ID, SECRET, TOKEN))
    finally:
        os.umask(old_umask)
    assert store.path == tmp_path / "data" / FILE_NAME
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text())["secret_access_key"] == SECRET
    assert store.load() == AwsCredentials(KEY_ID, SECRET, TOKEN)
    assert [p.name for p in store.path.parent.iterdir()] == [FILE_NAME]  # no temp file left


def test_save_replaces_the_previous_file_atomically(tmp_path: Path) -> None:
    store = AwsCredentialStore(tmp_path)
    store.save(AwsCredentials(KEY_ID, SECRET))
    first_inode = store.path.stat().st_ino
    store.save(AwsCredentials("AKIAZZZZZZZZZZZZWXYZ", SECRET))
    assert store.path.stat().st_ino != first_inode  # a new file was moved into place
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.describe() == "set, key id ending WXYZ"


def test_describe_and_as_env_when_nothing_is_stored(tmp_path: Path) -> None:
    store = AwsCredentialStore(tmp_path)
    assert store.load() is None
    assert store.describe() == "not set"
    assert store.as_env() == {}


def test_an_unreadable_file_counts_as_not_set(tmp_path: Path) -> None:
    store = AwsCredentialStore(tmp_path)
    store.path.write_text("{not json")
    assert store.load() is None
    store.path.write_text(json.dumps({"access_key_id": "bad", "secret_access_key": SECRET}))
    assert store.describe() == "not set"


def test_clear_removes_the_file(tmp_path: Path) -> None:
    store = AwsCredentialStore(tmp_path)
    store.save(AwsCredentials(KEY_ID, SECRET))
    store.clear()
    store.clear()  # twice is fine
    assert not store.path.exists()


def test_nothing_is_logged_with_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = AwsCredentialStore(tmp_path)
    credentials = AwsCredentials.parse(KEY_ID, SECRET, TOKEN)
    store.save(credentials)
    store.load()
    logging.getLogger("test").info("saved %s in %r", credentials, store)
    assert SECRET not in caplog.text
    assert TOKEN not in caplog.text
    assert "MPLE" in caplog.text
