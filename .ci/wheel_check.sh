#!/usr/bin/env bash
# The installed package, not the checkout (issue 12): build the wheel, install it into a fresh virtual
# environment outside the repository, and from another directory run `blue models`, `blue deconvolve` on an
# installed demo cohort with `--model pbmc`, and `blue app` headless until it answers HTTP 200.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'kill "${app_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
python -m pip wheel -q --no-deps -w "$work/dist" . >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q torch==2.13.0
"$work/venv/bin/pip" install -q "$work"/dist/*.whl
cd "$work"                                   # nowhere near the checkout
export PATH="$work/venv/bin:$PATH"
blue models
demo="$(python -c 'from blue_core.io.datasets import sample_root; print(sample_root() / "monaco_pbmc")')"
case "$demo" in "$work"/venv/*) ;; *) echo "demo cohort not installed with the wheel: $demo"; exit 1;; esac
blue deconvolve "$demo" --model pbmc --out "$work/out" >/dev/null
test -s "$work/out/proportions.csv"
head -3 "$work/out/proportions.csv"
blue app --port 8765 >"$work/app.log" 2>&1 &
app_pid=$!
for _ in $(seq 1 90); do
  code="$(python -c 'import urllib.request as u; print(u.urlopen("http://127.0.0.1:8765/", timeout=2).status)' 2>/dev/null || true)"
  [ "$code" = "200" ] && break
  sleep 1
done
echo "blue app: HTTP ${code:-none}"
[ "$code" = "200" ] || { cat "$work/app.log"; exit 1; }
python -c 'import urllib.request as u; assert u.urlopen("http://127.0.0.1:8765/_stcore/health", timeout=5).read() == b"ok"'
echo "wheel check passed"
