#!/usr/bin/env bash
# Run by `npm test` first (npm's pretest): the system programs some tests use, installed from
# Debian's packages when missing, so a fresh clone needs nothing installed by hand. The dashboard
# test drives Debian's chromium through playwright-core (no browser download); the invoice tests
# read the PDF's text with pdftotext (poppler-utils).
set -euo pipefail

missing=""
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing="$missing chromium"
command -v pdftotext >/dev/null 2>&1 || missing="$missing poppler-utils"
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "npm test needs:$missing (not found, and no apt-get to install them). Install them, or set CHROMIUM_PATH." >&2
  exit 1
fi
echo "installing$missing for the tests"
as_root=""
[ "$(id -u)" -eq 0 ] || as_root="sudo"
$as_root apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y --no-install-recommends $missing
