# Sourced by ./deploy.sh and ./test.sh: create .venv (Python 3.11+) and install the
# distributions into it. Re-installs only when a pyproject.toml changed.
# BOOTSTRAP_EXTRAS: extra pip requirements (the test suite adds its tools).

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${TTS_OPS_VENV:-$ROOT/.venv}"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "bootstrap: error: Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    py=$(find_python)
    echo "bootstrap: creating $VENV with $py"
    "$py" -m venv "$VENV"
fi

DISTS=("$ROOT/core" "$ROOT/plugins/manual" "$ROOT/plugins/strategies" "$ROOT/service"
       ${BOOTSTRAP_PLUGINS:-})
want=$(cat "$ROOT"/core/pyproject.toml "$ROOT"/plugins/*/pyproject.toml \
          "$ROOT"/service/pyproject.toml <(echo "${BOOTSTRAP_EXTRAS:-} ${BOOTSTRAP_PLUGINS:-}") \
          | sha256sum | cut -c1-16)
stamp="$VENV/.tts-ops-installed-$want"
if [ ! -e "$stamp" ]; then
    echo "bootstrap: installing ${DISTS[*]#"$ROOT/"}${BOOTSTRAP_EXTRAS:+ and $BOOTSTRAP_EXTRAS}"
    args=()
    for d in "${DISTS[@]}"; do args+=(-e "$d"); done
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" \
        ${BOOTSTRAP_EXTRAS:-}
    touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
