#!/usr/bin/env bash
# Set up from a fresh clone and deploy the reference TTS service on the embedded defaults
# (manual backend, file registry), then print its status.
#
#   ./deploy.sh [--environment E] [--strategy S] [--process-manager P] [--skip-tests] [-c FILE]
#
# S: direct (default), blue_green, rolling, canary. P: manual (default), auto, systemd,
# supervisor. Everything after the setup is `tts-ops deploy`; see docs/deploy.md.
set -euo pipefail
cd "$(dirname "$0")"

environment="${TTS_OPS_ENVIRONMENT:-development}"
strategy=direct
pm=manual  # the embedded default; auto detects systemd or supervisord
config=()
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --environment) environment="${2:?--environment needs a value}"; shift 2 ;;
        --strategy) strategy="${2:?--strategy needs a value}"; shift 2 ;;
        --process-manager) pm="${2:?--process-manager needs a value}"; shift 2 ;;
        --skip-tests) extra+=(--skip-tests); shift ;;
        -c|--config) config=(-c "${2:?--config needs a file}"); shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deploy.sh: error: unknown option $1 (see ./deploy.sh --help)" >&2; exit 2 ;;
    esac
done

. scripts/bootstrap.sh

tts-ops "${config[@]}" deploy --strategy "$strategy" --environment "$environment" \
    --process-manager "$pm" "${extra[@]}"
tts-ops "${config[@]}" status
