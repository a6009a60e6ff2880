# shellcheck shell=bash
# Sourced by scripts/test and scripts/serve: makes .venv with Python 3.12 (Panel 1.10 needs
# it) and installs the project into it, with the extras named in $LABLINK_EXTRAS.
# The install is skipped when .venv already holds it: a stamp in .venv records the hash of
# pyproject.toml, the extras and the Python, and only a change of one of them reinstalls
# (the project itself is installed editable, so code changes need no reinstall).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${PYTHON:-}" ]; then
  if command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -qx '3.12.1'; then
    export PYENV_VERSION=3.12.1
  fi
  PYTHON=python3.12
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
LABLINK_STAMP=".venv/.lablink-install-$(echo "${LABLINK_EXTRAS:-none}" | tr -c 'a-z0-9\n' '_')"
lablink_wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -V 2>&1)"
if [ ! -f "$LABLINK_STAMP" ] || [ "$(cat "$LABLINK_STAMP")" != "$lablink_wanted" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${LABLINK_EXTRAS}"
  echo "$lablink_wanted" > "$LABLINK_STAMP"
fi
