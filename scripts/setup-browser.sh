#!/usr/bin/env bash
# The real-browser suites drive Debian's Chromium through playwright-core; nothing downloads a
# browser build. Machines here are root with Debian's packages, so install it when missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "setup-browser: /usr/bin/chromium is missing; install Debian's chromium package (as root: apt-get install -y chromium)" >&2
  exit 1
fi
echo "setup-browser: installing Debian's chromium (about a minute, once)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || {
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends chromium >/dev/null
}
/usr/bin/chromium --version
