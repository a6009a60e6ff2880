"""Parsing of the Chrome Remote Desktop "set up via SSH" command.

Researchers paste the command Google shows them; only the OAuth code and the
redirect URL are kept, and the VM later runs `start-host` with an argument
list (never a shell). The parser is deliberately narrower than a shell: it
accepts the shapes Google produces and refuses anything a shell would treat
as more than plain words, so what we store can never mean something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from lablink_core.errors import InvalidInput
from lablink_core.validation import validate_hostname

START_HOST: Final = "/opt/google/chrome-remote-desktop/start-host"
GOOGLE_REDIRECT_URL: Final = "https://remotedesktop.google.com/_/oauthredirect"
HOSTNAME_PLACEHOLDER: Final = "$(hostname)"
MAX_COMMAND_LENGTH: Final = 4096
MIN_CODE_LENGTH: Final = 4
MAX_CODE_LENGTH: Final = 512

_FIELD: Final = "crd_command"
_CODE_RE: Final = re.compile(r"[A-Za-z0-9/_.~-]+")
_CODE_CHARS: Final = "letters, digits and / _ . ~ -"
_ASSIGNMENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_ALLOWED_ENV_PREFIXES: Final = frozenset({"DISPLAY=", 'DISPLAY=""', "DISPLAY=''"})
_OPTIONS: Final = ("--code", "--redirect-url", "--name")
_EDGE_WHITESPACE: Final = " \t\r\n"
# Two-character operators first so "&&" is reported as itself, not as "&".
_SHELL_OPERATORS: Final = ("&&", "||", ";", "|", "&", "`", ">", "<", "\\")


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, field=_FIELD)


def _show(text: str) -> str:
    """Quote user text for a message, cut short so a huge paste cannot flood the UI."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _check_code(code: object) -> str:
    if not isinstance(code, str):
        raise _invalid("--code must be text")
    if HOSTNAME_PLACEHOLDER in code:
        raise _invalid(f"{HOSTNAME_PLACEHOLDER} is only allowed as the value of --name")
    if not MIN_CODE_LENGTH <= len(code) <= MAX_CODE_LENGTH:
        raise _invalid(
            f"--code must be {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} characters long, "
            f"got {len(code)}"
        )
    if not _CODE_RE.fullmatch(code):
        bad = next(ch for ch in code if not _CODE_RE.fullmatch(ch))
        raise _invalid(f"--code contains {bad!r}; only {_CODE_CHARS} are allowed")
    return code


def _check_redirect_url(url: object) -> str:
    if url != GOOGLE_REDIRECT_URL:
        shown = _show(url) if isinstance(url, str) else type(url).__name__
        raise _invalid(f"--redirect-url must be exactly {GOOGLE_REDIRECT_URL}, not {shown}")
    return GOOGLE_REDIRECT_URL


@dataclass(frozen=True)
class CrdCommand:
    """The validated parts of a Chrome Remote Desktop setup command."""

    code: str
    redirect_url: str

    def __post_init__(self) -> None:
        # Validate here too so a CrdCommand built from stored data is as safe
        # as one that came out of parse_crd_command.
        _check_code(self.code)
        _check_redirect_url(self.redirect_url)

    def argv(self, *, hostname: str, start_host: str = START_HOST) -> list[str]:
        """The command as an argument list, for subprocess without a shell.

        The PIN is not in it: every local user can read a process's arguments, so the PIN
        goes to start-host on its standard input instead.
        """
        return [
            start_host,
            f"--code={self.code}",
            f"--redirect-url={self.redirect_url}",
            f"--name={validate_hostname(hostname)}",
        ]

    def canonical(self) -> str:
        """The command as Google shows it, rebuilt from the parsed parts."""
        return (
            f'DISPLAY= {START_HOST} --code="{self.code}" '
            f'--redirect-url="{self.redirect_url}" --name={HOSTNAME_PLACEHOLDER}'
        )


def _single_line(text: object) -> str:
    if text is None:
        raise _invalid("the Chrome Remote Desktop command is required")
    if not isinstance(text, str):
        raise _invalid(f"the command must be text, not {type(text).__name__}")
    if len(text) > MAX_COMMAND_LENGTH:
        raise _invalid(f"the command is longer than {MAX_COMMAND_LENGTH} characters")
    line = text.strip(_EDGE_WHITESPACE)
    if not line:
        raise _invalid("the Chrome Remote Desktop command is required")
    if line.isprintable():  # one C call for every ordinary paste: no tab, no control character
        return line
    for ch in line:
        if ch in "\r\n":
            raise _invalid("the command must be a single line")
        if ch != "\t" and not ch.isprintable():
            raise _invalid(f"the command contains the control character U+{ord(ch):04X}")
    return line


# One left-to-right scan (linear in the line's length): Google's own $(hostname) is skipped,
# the first other expansion or operator is reported.
_SHELL_SYNTAX_RE: Final = re.compile(
    r"(?P<placeholder>" + re.escape(HOSTNAME_PLACEHOLDER) + r")"
    r"|(?P<substitution>\$\()|(?P<expansion>\$\{)|(?P<variable>\$(?:[A-Za-z_][A-Za-z0-9_]*)?)"
    r"|(?P<operator>" + "|".join(re.escape(op) for op in _SHELL_OPERATORS) + r")"
)


# Every character an expansion or an operator can start with. A line without one of them
# outside Google's $(hostname) has nothing _SHELL_SYNTAX_RE would report.
_SHELL_START_RE: Final = re.compile(
    "[" + re.escape("$" + "".join(sorted({op[0] for op in _SHELL_OPERATORS}))) + "]"
)


def _check_shell_syntax(line: str) -> None:
    """Refuse anything a shell would expand or treat as an operator."""
    if not _SHELL_START_RE.search(line.replace(HOSTNAME_PLACEHOLDER, "")):
        return
    for match in _SHELL_SYNTAX_RE.finditer(line):
        kind, text = match.lastgroup, match.group()
        if kind == "placeholder":
            continue
        if kind == "substitution":
            raise _invalid(
                f"command substitution '$(' is not allowed (only --name={HOSTNAME_PLACEHOLDER})"
            )
        if kind == "expansion":
            raise _invalid("variable expansion '${' is not allowed")
        if kind == "variable":
            raise _invalid(f"shell variable {text!r} is not allowed")
        raise _invalid(f"shell operator {text!r} is not allowed")


# A word: runs of unquoted characters and quoted strings, up to an unquoted blank. Quotes
# pair with the next quote of the same kind; there are no escapes.
_WORD_PART: Final = r"""[^ \t'"]+|"[^"]*"|'[^']*'"""
_WORD_RE: Final = re.compile(f"(?:{_WORD_PART})+")
_WORD_PART_RE: Final = re.compile(_WORD_PART)
_BLANKS: Final = " \t"


def _unquoted(raw: str) -> str:
    """A word as the program receives it: each quoted part without its quotes."""
    return "".join(part[1:-1] if part[0] in "'\"" else part for part in _WORD_PART_RE.findall(raw))


def _tokenize(line: str) -> list[tuple[str, str]]:
    """Split on unquoted blanks; return (raw, unquoted) per word. No escapes exist."""
    tokens: list[tuple[str, str]] = []
    at, end = 0, len(line)
    while True:
        while at < end and line[at] in _BLANKS:
            at += 1
        if at == end:
            return tokens
        word = _WORD_RE.match(line, at)
        stop = word.end() if word else at
        if stop < end and line[stop] not in _BLANKS:  # a quote with no partner
            kind = "double" if line[stop] == '"' else "single"
            raise _invalid(f"unbalanced {kind} quote ({line[stop]}) in the command")
        raw = line[at:stop]
        tokens.append((raw, _unquoted(raw)))
        at = stop


def _strip_prefix(tokens: list[tuple[str, str]]) -> list[str]:
    """Check the optional DISPLAY= and the program; return the option words."""
    words = [word for _, word in tokens]
    if tokens and _ASSIGNMENT_RE.match(words[0]):
        if tokens[0][0] not in _ALLOWED_ENV_PREFIXES:
            raise _invalid(
                f"only an empty DISPLAY= may come before the program, not {_show(words[0])}"
            )
        words = words[1:]
    if not words:
        raise _invalid(f"the command is missing the program {START_HOST}")
    if words[0] != START_HOST:
        raise _invalid(f"the program must be {START_HOST}, not {_show(words[0])}")
    return words[1:]


def _parse_options(words: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-"):
            raise _invalid(f"unexpected argument {_show(word)}")
        name, has_value, value = word.partition("=")
        if name not in _OPTIONS:
            raise _invalid(f"unknown option {_show(name)}; only {', '.join(_OPTIONS)} are allowed")
        if not has_value:
            if i >= len(words) or words[i].startswith("-"):
                raise _invalid(f"{name} needs a value")
            value = words[i]
            i += 1
        if name in options:
            raise _invalid(f"{name} is given twice")
        options[name] = value
    return options


def parse_crd_command(text: object) -> CrdCommand:
    """Parse the command from Google's "set up via SSH" page, or raise `InvalidInput`."""
    line = _single_line(text)
    _check_shell_syntax(line)
    options = _parse_options(_strip_prefix(_tokenize(line)))
    if "--code" not in options:
        raise _invalid("--code is missing")
    if "--redirect-url" not in options:
        raise _invalid("--redirect-url is missing")
    name = options.get("--name", HOSTNAME_PLACEHOLDER)
    if name != HOSTNAME_PLACEHOLDER:
        raise _invalid(
            f"--name must be {HOSTNAME_PLACEHOLDER} or left out (the VM supplies its own name), "
            f"not {_show(name)}"
        )
    return CrdCommand(
        code=_check_code(options["--code"]),
        redirect_url=_check_redirect_url(options["--redirect-url"]),
    )
