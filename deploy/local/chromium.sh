#!/usr/bin/env bash
# The browser of the console's test (services/herald/allinone TestConsoleInBrowser): Debian's
# chromium package, installed with apt-get if it is missing, as redis.sh does for Redis.
#
#   chromium.sh [path]   install it if need be, and print the path of its binary
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-path} in
  path)
    # Progress goes to stderr: stdout is the path alone.
    apt_install chromium chromium >&2
    command -v chromium
    ;;
  *) die "usage: $0 [path]" ;;
esac
