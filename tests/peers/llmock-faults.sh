#!/usr/bin/env bash
# llmock for tests/reliability, in the shared "$PEERS/llmock-venv". tests/peers/llmock.sh
# installs the same venv: defer to it when it is there, so there is one install recipe.
set -euo pipefail
PEERS=${PEERS:-${CHATCLI_PEERS:-$HOME/.cache/chatcli-peers}}
here=$(dirname "$0")
if [ -e "$here/llmock.sh" ]; then
  PEERS="$PEERS" exec bash "$here/llmock.sh"
fi
VENV="$PEERS/llmock-venv"
mkdir -p "$PEERS"
[ -x "$VENV/bin/llmock" ] && exit 0
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check 'llmock>=0.2,<0.3'
