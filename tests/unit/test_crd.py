"""Unit tests for lablink_core.crd: the Chrome Remote Desktop command parser."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lablink_core.crd import (
    GOOGLE_REDIRECT_URL,
    START_HOST,
    CrdCommand,
    parse_crd_command,
)
from lablink_core.errors import InvalidInput

CODE = "4/0AbCD_ef-12"
URL = GOOGLE_REDIRECT_URL
GOOGLE_FORM = f'DISPLAY= {START_HOST} --code="{CODE}" --redirect-url="{URL}" --name=$(hostname)'

ACCEPTED = [
    pytest.param(GOOGLE_FORM, id="google-exact"),
    pytest.param(GOOGLE_FORM + "\n", id="trailing-lf"),
    pytest.param(GOOGLE_FORM + "\r\n", id="trailing-crlf"),
    pytest.param("  \t" + GOOGLE_FORM + " \t \n", id="surrounding-whitespace"),
    pytest.param(
        f'{START_HOST} --code="{CODE}" --redirect-url="{URL}" --name=$(hostname)', id="no-display"
    ),
    pytest.param(f'DISPLAY= {START_HOST} --code="{CODE}" --redirect-url="{URL}"', id="no-name"),
    pytest.param(f"DISPLAY= {START_HOST} --code='{CODE}' --redirect-url='{URL}'", id="single-q"),
    pytest.param(f"DISPLAY= {START_HOST} --code={CODE} --redirect-url={URL}", id="unquoted"),
    pytest.param(f"{START_HOST} --code {CODE} --redirect-url {URL}", id="space-separated"),
    pytest.param(f"{START_HOST} --code \"{CODE}\" --redirect-url '{URL}'", id="space-quoted"),
    pytest.param(
        f'{START_HOST} --redirect-url="{URL}" --name=$(hostname) --code="{CODE}"', id="reordered"
    ),
    pytest.param(
        f'{START_HOST} --name="$(hostname)" --code={CODE} --redirect-url={URL}',
        id="name-double-quoted",
    ),
    pytest.param(
        f"{START_HOST} --name='$(hostname)' --code={CODE} --redirect-url={URL}",
        id="name-single-quoted",
    ),
    pytest.param(
        f"{START_HOST} --name $(hostname) --code={CODE} --redirect-url={URL}",
        id="name-space-separated",
    ),
    pytest.param(
        f"DISPLAY=\t\t{START_HOST}   --code={CODE}\t--redirect-url={URL}  ", id="tabs-and-spaces"
    ),
    pytest.param(
        f'DISPLAY="" {START_HOST} --code={CODE} --redirect-url={URL}', id="display-quoted-empty"
    ),
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted_forms(text: str) -> None:
    cmd = parse_crd_command(text)
    assert cmd == CrdCommand(code=CODE, redirect_url=URL)
    assert cmd.code == CODE
    assert cmd.redirect_url == URL


GOOD_OPTS = f"--code={CODE} --redirect-url={URL}"

REFUSED = [
    pytest.param(None, "required", id="none"),
    pytest.param(42, "text", id="not-a-string"),
    pytest.param(b"bytes", "text", id="bytes"),
    pytest.param("", "required", id="empty"),
    pytest.param(" \t\r\n", "required", id="blank"),
    pytest.param(GOOGLE_FORM + " " * 4096, "longer", id="too-long"),
    pytest.param(f"{START_HOST} --code={CODE}\n--redirect-url={URL}", "single line", id="mid-lf"),
    pytest.param(f"{START_HOST} --code={CODE}\r--redirect-url={URL}", "single line", id="mid-cr"),
    pytest.param(f"{START_HOST} --code={CODE}\x00 --redirect-url={URL}", "U+0000", id="nul"),
    pytest.param(f"{START_HOST}\x1b[31m {GOOD_OPTS}", "U+001B", id="escape-seq"),
    pytest.param(f"{START_HOST} {GOOD_OPTS}; rm -rf /", "';'", id="semicolon"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} && reboot", "'&&'", id="and-and"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} || reboot", "'||'", id="or-or"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} | tee x", "'|'", id="pipe"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} &", "'&'", id="background"),
    pytest.param(f"{START_HOST} --code=`id` --redirect-url={URL}", "'`'", id="backtick"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} > /etc/passwd", "'>'", id="redirect-out"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} < /dev/null", "'<'", id="redirect-in"),
    pytest.param(f"{START_HOST} --code=$(id) --redirect-url={URL}", "substitution", id="subst"),
    pytest.param(f"{START_HOST} --code=${{HOME}} --redirect-url={URL}", "'${'", id="brace-var"),
    pytest.param(f"{START_HOST} --code=$HOME --redirect-url={URL}", "$HOME", id="bare-var"),
    pytest.param(f"{START_HOST} --code=a$ --redirect-url={URL}", "'$'", id="lone-dollar"),
    pytest.param(f'{START_HOST} --code="{CODE}\\" --redirect-url={URL}', "'\\\\'", id="backslash"),
    pytest.param(
        f"{START_HOST} --code=$(hostname) --redirect-url={URL}",
        "only allowed",
        id="hostname-as-code",
    ),
    pytest.param(f"/usr/bin/start-host {GOOD_OPTS}", "program must be", id="wrong-program"),
    pytest.param(f"start-host {GOOD_OPTS}", "program must be", id="bare-start-host"),
    pytest.param(f"sudo {START_HOST} {GOOD_OPTS}", "sudo", id="sudo"),
    pytest.param("DISPLAY=", "missing the program", id="only-display"),
    pytest.param(f"DISPLAY=:0 {START_HOST} {GOOD_OPTS}", "DISPLAY=", id="display-value"),
    pytest.param(f"LD_PRELOAD=/x.so {START_HOST} {GOOD_OPTS}", "LD_PRELOAD", id="other-env"),
    pytest.param(
        f"DISPLAY= DISPLAY= {START_HOST} {GOOD_OPTS}", "program must be", id="display-twice"
    ),
    pytest.param(f"{START_HOST} {GOOD_OPTS} --pin=123456", "--pin", id="unknown-pin"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} -v", "unknown option", id="short-option"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} extra", "unexpected argument", id="positional"),
    pytest.param(f"{START_HOST} --redirect-url={URL}", "--code is missing", id="no-code"),
    pytest.param(
        f"{START_HOST} --code={CODE} --code={CODE} --redirect-url={URL}", "twice", id="code-twice"
    ),
    pytest.param(f"{START_HOST} --code={CODE}", "--redirect-url is missing", id="no-redirect"),
    pytest.param(f"{START_HOST} {GOOD_OPTS} --redirect-url={URL}", "twice", id="redirect-twice"),
    pytest.param(
        f"{START_HOST} --code={CODE} --redirect-url=https://evil.example/_/oauthredirect",
        "exactly",
        id="redirect-other-host",
    ),
    pytest.param(
        f"{START_HOST} --code={CODE} --redirect-url={URL}/", "exactly", id="redirect-trailing-slash"
    ),
    pytest.param(
        f"{START_HOST} --code={CODE} --redirect-url=http://remotedesktop.google.com/_/"
        "oauthredirect",
        "exactly",
        id="redirect-http",
    ),
    pytest.param(
        f"{START_HOST} {GOOD_OPTS} --name=my-vm", "supplies its own name", id="name-literal"
    ),
    pytest.param(
        f"{START_HOST} {GOOD_OPTS} --name=$(hostname)x", "supplies its own name", id="name-suffix"
    ),
    pytest.param(
        f"{START_HOST} {GOOD_OPTS} --name=$(hostname) --name=$(hostname)", "twice", id="name-twice"
    ),
    pytest.param(
        f'{START_HOST} --code="{CODE} --redirect-url={URL}',
        "unbalanced double",
        id="unbalanced-double",
    ),
    pytest.param(
        f"{START_HOST} --code='{CODE} --redirect-url={URL}",
        "unbalanced single",
        id="unbalanced-single",
    ),
    pytest.param(f"{START_HOST} --code=4/ab*cd --redirect-url={URL}", "'*'", id="code-glob"),
    pytest.param(f"{START_HOST} --code='4/ab cd' --redirect-url={URL}", "' '", id="code-space"),
    pytest.param(f"{START_HOST} --code=4/é1234 --redirect-url={URL}", "'é'", id="code-unicode"),
    pytest.param(
        f"{START_HOST} --code=4/a --redirect-url={URL}", "characters long", id="code-short"
    ),
    pytest.param(
        f"{START_HOST} --code=4/{'a' * 511} --redirect-url={URL}", "characters long", id="code-long"
    ),
    pytest.param(f"{START_HOST} --code= --redirect-url={URL}", "characters long", id="code-empty"),
    pytest.param(
        f"{START_HOST} --redirect-url={URL} --code", "needs a value", id="code-without-value"
    ),
    pytest.param(
        f"{START_HOST} --code --redirect-url={URL}", "needs a value", id="code-followed-by-option"
    ),
]


@pytest.mark.parametrize(("text", "word"), REFUSED)
def test_refused_forms(text: object, word: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_crd_command(text)
    assert info.value.field == "crd_command"
    assert info.value.code == "invalid_input"
    assert word in info.value.message


def test_argv_is_a_plain_argument_list() -> None:
    cmd = parse_crd_command(GOOGLE_FORM)
    assert cmd.argv(hostname="VM-01") == [
        START_HOST,
        f"--code={CODE}",
        f"--redirect-url={URL}",
        "--name=vm-01",
    ]
    assert cmd.argv(hostname="vm", start_host="/bin/echo")[0] == "/bin/echo"


def test_argv_never_carries_a_pin() -> None:
    # Process arguments are readable by every local user: the PIN travels on stdin.
    assert not any("pin" in arg for arg in parse_crd_command(GOOGLE_FORM).argv(hostname="vm"))


@pytest.mark.parametrize("hostname", ["vm;reboot", "vm 1", ""])
def test_argv_refuses_a_bad_hostname(hostname: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_crd_command(GOOGLE_FORM).argv(hostname=hostname)
    assert info.value.field == "hostname"


def test_canonical_is_googles_form() -> None:
    assert parse_crd_command(f"{START_HOST} --code {CODE} --redirect-url {URL}").canonical() == (
        GOOGLE_FORM
    )


def test_crd_command_is_frozen_and_validates_direct_construction() -> None:
    cmd = parse_crd_command(GOOGLE_FORM)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.code = "other"  # type: ignore[misc]
    with pytest.raises(InvalidInput):
        CrdCommand(code="4/ab;cd", redirect_url=URL)
    with pytest.raises(InvalidInput):
        CrdCommand(code=CODE, redirect_url="https://example.org/")


# --- property tests -------------------------------------------------------------------------

CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_.~-"
SHELL_META = ";&|`><$(){}\\\"'\n*?#! \t"
METACHARACTERS = [";", "&&", "||", "|", "&", "`", ">", "<", "$(", "${", "$HOME", "$x"]

codes = st.text(alphabet=CODE_ALPHABET, min_size=4, max_size=512)
blanks = st.text(alphabet=" \t", min_size=1, max_size=3)
quotes = st.sampled_from(['"', "'", ""])


@st.composite
def googleish_commands(draw: st.DrawFn, code_strategy: st.SearchStrategy[str] = codes) -> str:
    """Commands in the shapes Google produces, with random variations of layout."""
    code = draw(code_strategy)
    q1, q2, q3 = draw(quotes), draw(quotes), draw(quotes)
    opts = [f"--code={q1}{code}{q1}", f"--redirect-url={q2}{URL}{q2}"]
    if draw(st.booleans()):
        opts.append(f"--name={q3}$(hostname){q3}")
    opts = draw(st.permutations(opts))
    parts = ([] if draw(st.booleans()) else ["DISPLAY="]) + [START_HOST, *opts]
    text = "".join(part + draw(blanks) for part in parts)
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", "\n", "\r\n"]))


@given(st.one_of(st.text(), googleish_commands(st.text()), st.binary(), st.integers(), st.none()))
@settings(max_examples=500)
def test_parse_only_returns_or_raises_invalid_input(text: object) -> None:
    try:
        result = parse_crd_command(text)
    except InvalidInput as exc:
        assert exc.field == "crd_command"
        assert exc.message
    else:
        assert isinstance(result, CrdCommand)


@given(st.one_of(googleish_commands(), googleish_commands(st.text()), st.text()))
@settings(max_examples=500)
def test_accepted_commands_are_clean_and_round_trip(text: str) -> None:
    try:
        cmd = parse_crd_command(text)
    except InvalidInput:
        return
    for value in (cmd.code, cmd.redirect_url):
        assert not set(value) & set(SHELL_META.replace("~", ""))
        assert value == value.strip()
    assert parse_crd_command(cmd.canonical()) == cmd


@given(codes)
def test_google_form_round_trips_any_valid_code(code: str) -> None:
    text = f'DISPLAY= {START_HOST} --code="{code}" --redirect-url="{URL}" --name=$(hostname)\n'
    cmd = parse_crd_command(text)
    assert cmd.code == code
    assert cmd.redirect_url == URL


@given(st.data(), googleish_commands(), st.sampled_from(METACHARACTERS))
def test_injected_metacharacters_are_refused(data: st.DataObject, text: str, meta: str) -> None:
    parse_crd_command(text)  # the command is valid before the injection
    pos = data.draw(st.integers(min_value=0, max_value=len(text)))
    with pytest.raises(InvalidInput):
        parse_crd_command(text[:pos] + meta + text[pos:])
