#!/usr/bin/env bash
# llmock (PyPI, a fault-injecting OpenAI mock) in its own virtualenv, for tests/reliability.
# Idempotent; shares "$PEERS/llmock-venv" with tests/peers/llmock.sh if that exists too.
set -euo pipefail
PEERS=${PEERS:-${CHATCLI_PEERS:-$HOME/.cache/chatcli-peers}}
VENV="$PEERS/llmock-venv"
mkdir -p "$PEERS"
if [ -x "$VENV/bin/llmock" ]; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check 'llmock==0.2.2'
