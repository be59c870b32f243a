# sed script: the boot test's copy of totmapsfs.rules.yml (fleet-test.sh).
# Only the staleness threshold changes, 60 s -> 20 s: still above the timer's
# 15 s, so the alert stays quiet while the timer runs, and goes pending within
# about 20 s of the writer stopping. Everything else, `for:` included, is the
# shipped file (tests/systemd/test_rules.py checks that this changes exactly
# one line and that promtool accepts the result).
s/^\( *expr: time() - node_textfile_mtime_seconds{[^}]*}\) > 60$/\1 > 20/
