#!/usr/bin/env bash
# Peer: llmock (an OpenAI mock with scripted faults), in its own virtualenv "$PEERS/llmock-venv"
# so its FastAPI/uvicorn/typer never mix with chatcli's. Run by tests/run.sh; idempotent.
set -euo pipefail
: "${PEERS:?set PEERS to the peers directory}"
V="$PEERS/llmock-venv"
PY=${PYTHON:-python3}
if [ -x "$V/bin/llmock" ] && "$V/bin/python" -c "import llmock" 2>/dev/null; then
  echo "llmock: ready in $V" >&2
  exit 0
fi
[ -x "$V/bin/python" ] || "$PY" -m venv "$V"
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$V/bin/python" -m pip install -q 'llmock>=0.2,<0.3'
"$V/bin/python" -c "import llmock"
echo "llmock: installed in $V" >&2
