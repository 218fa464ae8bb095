#!/usr/bin/env bash
# Fresh clone to first answer, as a new user gets it: clone this repository's HEAD into a temporary folder, make
# a fresh venv, run the README's install (`make install`), then ask one question with an empty user dir
# (ASSISTANT_HOME), printing the transcript and a table of seconds.
#
#   bench/first_run.sh          # warm pip cache: llama-cpp-python's wheel is reused if pip built it before
#   bench/first_run.sh --cold   # an empty pip cache: llama-cpp-python builds from source (10+ minutes on 2 cores)
#
# The ask exits 3 when the answer is not from sources (offline with no index, for one): that is a result here,
# not a failure of the script.
set -euo pipefail

cache=warm
if [ "${1:-}" = "--cold" ]; then cache=cold; elif [ $# -gt 0 ]; then echo "usage: $0 [--cold]" >&2; exit 2; fi
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASSISTANT_HOME="$work/home"  # an empty user dir: no model pulled, no marker, no config
if [ "$cache" = cold ]; then export PIP_CACHE_DIR="$work/pip-cache"; fi
question="Who painted The Night Watch?"

start=$(date +%s)
git clone -q "$repo" "$work/clone"
python3 -m venv "$work/venv"
if ! make -C "$work/clone" install PY="$work/venv/bin/python" >"$work/install.log" 2>&1; then
    tail -20 "$work/install.log" >&2
    exit 1
fi
installed=$(date +%s)
echo "\$ assistant ask \"$question\""
rc=0
"$work/venv/bin/assistant" ask "$question" 2>&1 || rc=$?
answered=$(date +%s)

echo
echo "commit $(git -C "$work/clone" rev-parse --short HEAD), $(nproc) cores, $cache pip cache; ask exited $rc"
echo
echo "| step | seconds |"
echo "|---|---|"
echo "| clone, venv, make install | $((installed - start)) |"
echo "| first ask (load, search, answer) | $((answered - installed)) |"
echo "| fresh clone to first answer | $((answered - start)) |"
