#!/usr/bin/env bash
# Set up from a fresh clone and deploy the reference TTS service on the embedded defaults
# (manual backend, file registry), then print its status.
#
#   ./deploy.sh [--environment E] [--strategy S] [--process-manager P] [--skip-tests] [-c FILE]
#
# The strategies (blue_green, rolling, canary) arrive with tts-ops-strategies; until then a
# deploy starts (or keeps) the configured services and waits until they are ready.
set -euo pipefail
cd "$(dirname "$0")"

environment="${TTS_OPS_ENVIRONMENT:-development}"
strategy=direct
pm=manual  # the embedded default; --process-manager auto detects systemd or supervisord
config=()
while [ $# -gt 0 ]; do
    case "$1" in
        --environment) environment="${2:?--environment needs a value}"; shift 2 ;;
        --strategy) strategy="${2:?--strategy needs a value}"; shift 2 ;;
        --process-manager) pm="${2:?--process-manager needs a value}"; shift 2 ;;
        --skip-tests) shift ;;
        -c|--config) config=(-c "${2:?--config needs a file}"); shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deploy.sh: error: unknown option $1 (see ./deploy.sh --help)" >&2; exit 2 ;;
    esac
done
case "$environment" in
    development|staging|production) ;;
    *) echo "deploy.sh: error: --environment must be development, staging or production (got $environment)" >&2; exit 2 ;;
esac
if [ "$strategy" != direct ]; then
    echo "deploy.sh: error: strategy '$strategy' needs tts-ops-strategies, which is not built yet; use --strategy direct" >&2
    exit 3
fi

. scripts/bootstrap.sh

echo "deploy: environment $environment, strategy $strategy, process manager $pm"
tts-ops "${config[@]}" config validate
tts-ops "${config[@]}" start --all --process-manager "$pm"
tts-ops "${config[@]}" status
