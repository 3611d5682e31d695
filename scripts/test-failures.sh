#!/usr/bin/env bash
# Summarize the failures in a `go test` log: each `--- FAIL` line with the
# lines indented under it (the test's messages, which say what it last saw),
# each panic or time-out with its first lines, and each failing package.
#
#   scripts/test-failures.sh LOG
set -euo pipefail
log=$1
echo
echo "==== failures in $log ===="
awk '
  function indent(s) { match(s, /[^ \t]/); return RSTART }
  /^[ \t]*--- FAIL:/ { print; cur = indent($0); body = 0; infail = 1; next }
  infail && /^[ \t]/ && indent($0) > cur && $0 !~ /^[ \t]*--- (PASS|SKIP|FAIL)/ {
    if (body++ < 40) print
    else if (body == 41) print "        ... (more in the log)"
    next
  }
  { infail = 0 }
  /^panic: / || /^fatal error: / { print; p = 12; next }
  p > 0 { print; p--; next }
  /^FAIL[ \t]/ || /^# / || /\[build failed\]/ || /\[setup failed\]/ { print }
' "$log"
echo "==== end of failures ===="
