# shellcheck shell=bash
# Sourced by scripts/test and scripts/serve: makes .venv with Python 3.12 (Panel 1.10 needs
# it) and installs the project into it, with the extras named in $LABLINK_EXTRAS.
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
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${LABLINK_EXTRAS}"
