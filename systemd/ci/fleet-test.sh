# The boot test's fleet path, sourced by boot-test.sh after its own checks
# (it uses that script's helpers: log, pass, fail, check, timing, now_ms,
# wait_until, reads_pss, no_mount, and $MP). Never installed.
#
# Inside the container, as a new Debian host would have them: Debian's
# prometheus-node-exporter (textfile collector on its default directory) and
# prometheus, both started as their Debian units with Debian's ARGS="" (the
# test writes only prometheus.yml: scrape 127.0.0.1:9100 every second,
# evaluate every second, load the shipped rules with the staleness threshold
# lowered by fleet-rules.sed). Then `systemctl enable --now
# totmapsfs-textfile.timer`, a service of known memory (memprobe.py), and
# PromQL answers compared with what the mount says, the end-to-end delay of a
# memory change, and each alert going pending on the failure it is for.
#
# /etc is a fresh tmpfs here: no prometheus user, no /etc/default files but
# the package's, no /var/lib/prometheus. They are made the way Debian's packages make them.

FLEET_DIR=/var/lib/prometheus/node-exporter
PROM_FILE=$FLEET_DIR/totmapsfs.prom
TEXTFILE=totmapsfs-textfile.service
TIMER=totmapsfs-textfile.timer
PROBE=fleet-probe.service
PROBE_STATE=/run/fleet-probe.state
PROBE_SERIES="totmapsfs_cgroup_pss_bytes{cgroup=\"/system.slice/$PROBE\"}"
SHIPPED_RULES=/usr/share/totmapsfs/prometheus/totmapsfs.rules.yml
TEST_RULES=/etc/prometheus/totmapsfs.rules.yml
GROW_MIB=64

promql() { python3 /ci/bin/promql.py "$@" 2>/dev/null; }
# A sample value (Go float text such as 4.194304e+07) as whole bytes.
whole() { printf '%.0f' "$1" 2>/dev/null; }
# unit_journal_has UNIT PATTERN: as journal_has, for any unit.
unit_journal_has() {
    local deadline=$(($(now_ms) + 5000))
    until journalctl -q -b -u "$1" --no-pager 2>/dev/null | grep -q -- "$2"; do
        [ "$(now_ms)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}
# The value of one sample line of the textfile ("name{labels} value").
file_value() { grep -F "$1 " "$PROM_FILE" 2>/dev/null | cut -d' ' -f2; }
mtime_ms() { local s; s=$(stat -c %.3Y "$1" 2>/dev/null) && echo "${s/./}"; }
probe_pss_bytes() { # the mount's answer for the probe's cgroup
    local kb
    kb=$(timeout 5 grep '^Pss:' "$MP/cgroup/system.slice/$PROBE/totmaps" 2>/dev/null | tr -s ' ' | cut -d' ' -f2)
    [ -n "$kb" ] && echo $((kb * 1024))
}
# prom_is QUERY VALUE: the first sample is VALUE (compared as whole numbers:
# Prometheus writes 38696960 where the textfile has 3.869696e+07).
prom_is() {
    local v
    v=$(promql value "$1") && [ "$(whole "$v")" = "$(whole "$2")" ]
}
alert_is() { [ "$(promql alert "$1")" = "$2" ]; }
# series_counts OUTPUT: samples, and the formula's terms, of a metrics text.
series_counts() {
    local s c n f g m
    s=$(grep -vc '^#' "$1")
    c=$(grep -c '^totmapsfs_cgroup_processes{' "$1")
    n=$(grep -c '^totmapsfs_process_pss_bytes{' "$1")
    f=$(grep -c '^# TYPE totmapsfs_cgroup_.*_bytes gauge$' "$1")
    g=$(grep -Ec '^totmapsfs_(program|user)_processes\{' "$1")
    m=$(grep -c '^totmapsfs_meminfo_bytes{' "$1")
    echo "$s $c $n $f $(wc -c <"$1") $g $m"
}

log "fleet: $(prometheus --version 2>&1 | head -1); $(prometheus-node-exporter --version 2>&1 | head -1)"
fleet_cursor=$(journalctl -u "$UNIT" -n 0 --show-cursor --no-pager 2>/dev/null | sed -n 's/^-- cursor: //p')

# --- 12. node_exporter and Prometheus, as Debian's packages set them up ----
systemd-sysusers --inline 'u prometheus - "Prometheus daemon" /var/lib/prometheus'
install -d -o prometheus -g prometheus /var/lib/prometheus /var/lib/prometheus/metrics2
install -d -m 0755 "$FLEET_DIR" # root:root 0755, as the package ships it
mkdir -p /etc/default /etc/prometheus
echo 'ARGS=""' >/etc/default/prometheus-node-exporter
echo 'ARGS=""' >/etc/default/prometheus
sed -f /ci/bin/fleet-rules.sed "$SHIPPED_RULES" >"$TEST_RULES"
cat >/etc/prometheus/prometheus.yml <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $TEST_RULES
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:9100"]
EOF
# D-Bus, for node_exporter's systemd collector: on a host booted to
# multi-user.target sockets.target starts it; this boot went straight to
# citest.service, whose dependencies do not include sockets.target.
systemctl start dbus.socket
systemctl start prometheus-node-exporter.service prometheus.service
t0=$(now_ms)
if wait_until 60 promql ready && wait_until 30 prom_is 'up{job="node"}' 1; then
    timing fleet-prometheus-ready $(($(now_ms) - t0))
    pass fleet-exporters-up "Prometheus ready, up{job=\"node\"} 1 after $(($(now_ms) - t0)) ms"
else
    fail fleet-exporters-up "prometheus $(systemctl is-active prometheus), node_exporter $(systemctl is-active prometheus-node-exporter): $(journalctl -b -u prometheus -u prometheus-node-exporter --no-pager | tail -5)"
fi
rules=$(promql rules | sort | tr '\n' ' ')
check fleet-rules-loaded "promtool accepts the shipped and the test copy; loaded: $rules" \
    'promtool check rules "$SHIPPED_RULES" >/dev/null 2>&1 && promtool check rules "$TEST_RULES" >/dev/null 2>&1 &&
    [ "$rules" = "TotmapsfsDaemonFailed TotmapsfsProcessesLeftOut TotmapsfsTextfileStale TotmapsfsTextfileUnreadable instance_service:totmapsfs_pss_bytes service:totmapsfs_pss_bytes:sum " ]'

# --- 13. The textfile timer, enabled on a host where the daemon is stopped --
rm -f "$PROBE_STATE"
systemd-run --quiet --unit="$PROBE" -p Type=exec /usr/bin/python3 /ci/bin/memprobe.py 32 "$GROW_MIB" "$PROBE_STATE"
wait_until 20 grep -q '^ready' "$PROBE_STATE" || fail fleet-probe "memprobe.py did not start: $(systemctl status "$PROBE" 2>&1 | tail -3)"
daemon_before=$(systemctl is-active "$UNIT")
t0=$(now_ms)
t_enabled=$t0
systemctl enable --now "$TIMER" 2>/dev/null
if wait_until 20 test -s "$PROM_FILE"; then
    timing textfile-first-write $(($(now_ms) - t0))
fi
check textfile-timer-starts-daemon "daemon $daemon_before before, $(systemctl is-active "$UNIT") after enable --now $TIMER; totmapsfs.prom after $(($(now_ms) - t0)) ms" \
    '[ "$daemon_before" != active ] && [ "$(systemctl is-active "$UNIT")" = active ] && [ -s "$PROM_FILE" ]'
leftover=$(find "$FLEET_DIR" -name '.totmapsfs.prom.*' | wc -l)
perms=$(stat -c '%a %U:%G' "$PROM_FILE" 2>/dev/null)
check textfile-written "$PROM_FILE: $perms, $(grep -c . "$PROM_FILE") lines, $leftover temporary files left" \
    '[ "$perms" = "644 root:root" ] && [ "$leftover" = 0 ] && grep -q "^totmapsfs_processes " "$PROM_FILE"'
# PID 1 holds every capability: the kernel's rule lets only a reader with
# CAP_SYS_PTRACE read it, so its count shows the sandboxed writer kept that.
check textfile-counts-pid1 "$(grep -F 'totmapsfs_cgroup_processes{cgroup="/init.scope"}' "$PROM_FILE")" \
    '[ "$(file_value "totmapsfs_cgroup_processes{cgroup=\"/init.scope\"}")" = 1.0 ]'

# --- 14. What PromQL answers is what the mount says -------------------------
# Prometheus must first have scraped the file that holds the probe's series;
# then its value is the file's exactly, and the file's is the mount's within
# the drift since the write (Pss of the probe's shared library pages moves as
# other processes map or drop them).
prom_matches_file() {
    local f
    f=$(file_value "$PROBE_SERIES")
    [ -n "$f" ] && prom_is "$PROBE_SERIES" "$f"
}
if wait_until 30 prom_matches_file; then
    prom=$(whole "$(promql value "$PROBE_SERIES")")
    mnt=$(probe_pss_bytes)
    drift=$((prom > mnt ? prom - mnt : mnt - prom))
    check fleet-pss-matches "PromQL $prom B = totmapsfs.prom; mount $mnt B now (drift $drift B)" \
        '[ "$prom" -ge $((32 << 20)) ] && [ "$drift" -le $((1 << 20)) ]'
else
    fail fleet-pss-matches "Prometheus never had the file's value: file '$(file_value "$PROBE_SERIES")', PromQL '$(promql value "$PROBE_SERIES")'"
    prom=0
fi
rec="instance_service:totmapsfs_pss_bytes{service=\"$PROBE\"}"
rec_matches() {
    local v
    v=$(promql value "$PROBE_SERIES")
    [ -n "$v" ] && prom_is "$rec" "$v"
}
if wait_until 10 rec_matches; then
    pass fleet-recording-rule "$rec = $(promql value "$rec") = the raw series"
else
    fail fleet-recording-rule "$rec = '$(promql value "$rec")', raw '$(promql value "$PROBE_SERIES")'"
fi
check fleet-scrape-error-0 "node_textfile_scrape_error $(promql value node_textfile_scrape_error)" 'prom_is node_textfile_scrape_error 0'
check fleet-left-out-zero "totmapsfs_processes_left_out $(promql value totmapsfs_processes_left_out)" 'prom_is totmapsfs_processes_left_out 0'
# TotmapsfsDaemonFailed's series: node_exporter's systemd collector works here (over D-Bus).
check fleet-systemd-collector "node_systemd_unit_state{name=\"$UNIT\",state=\"active\"} $(promql value "node_systemd_unit_state{name=\"$UNIT\",state=\"active\"}")" \
    'prom_is "node_systemd_unit_state{name=\"$UNIT\",state=\"active\"}" 1'

# --- 15. End-to-end delay: the probe grows, until PromQL shows it ----------
# From the moment its new pages are in place to the first PromQL answer that
# counts them: waiting for the timer's next run (0-15 s), the write, then the
# next scrape (0-1 s here). The timer's run is also the refresh check.
mt0=$(mtime_ms "$PROM_FILE")
mt1=$mt0
grown_seen() {
    # mt1: the first write after mt0 (the timer's next run, for the interval).
    [ "$mt1" = "$mt0" ] && mt1=$(mtime_ms "$PROM_FILE")
    local v
    v=$(whole "$(promql value "$PROBE_SERIES")")
    [ -n "$v" ] && [ "$v" -ge $((prom + (GROW_MIB - 4) * 1048576)) ]
}
systemctl kill -s USR1 --kill-whom=main "$PROBE"
if wait_until 10 grep -q '^grown' "$PROBE_STATE" && wait_until 30 grown_seen; then
    seen=$(now_ms)
    # The write that holds the growth: the file as it is now (the next one is 15 s away).
    mtw=$(mtime_ms "$PROM_FILE")
    read -r _ _ grown <"$PROBE_STATE"
    timing fleet-change-to-promql $((seen - grown))
    pass fleet-change-to-promql "+$GROW_MIB MiB in PromQL $((seen - grown)) ms after the pages were in place: written $((mtw - grown)) ms after, scraped and answered $((seen - mtw)) ms after the write"
else
    fail fleet-change-to-promql "not seen: probe '$(cat "$PROBE_STATE")', PromQL $(promql value "$PROBE_SERIES"), before $prom"
fi
interval=$((mt1 - mt0))
timing textfile-interval "$interval"
check textfile-refreshed "mtime advanced by the timer alone: $interval ms between two writes" \
    '[ "$interval" -ge 10000 ] && [ "$interval" -le 20000 ]'

# --- 16. Series per host: defaults, and the fleet settings ------------------
# The formula (docs/monitoring.md): 11 + M + (F+1) x cgroups + (F+2) x processes + (F+1) x (programs + users),
# F fields (USS included), M lines of the meminfo reconciliation (one a line, whatever the kernel prints);
# the 11: processes, left out, oldest answer, walks, walk seconds, 3 held answers, and the files
# walks' 3 counters.
timeout 5 cat "$MP/metrics" >/tmp/metrics.default
read -r s1 c1 n1 f1 b1 g1 m1 < <(series_counts /tmp/metrics.default)
/usr/bin/totmapsfs --metrics-top 10 --metrics-cgroup-depth 2 --metrics-fields Rss,Pss,USS,Swap,SwapPss \
    --metrics-groups 5 \
    /run/totmaps-fleet 2>/dev/null &
fleet_daemon=$!
wait_until 10 reads_pss /run/totmaps-fleet/self/totmaps && timeout 5 cat /run/totmaps-fleet/metrics >/tmp/metrics.fleet
kill "$fleet_daemon"
wait "$fleet_daemon"
read -r s2 c2 n2 f2 b2 g2 m2 < <(series_counts /tmp/metrics.fleet)
check fleet-series-counts "defaults: $s1 series ($c1 cgroups, $n1 processes, $g1 programs and users, $m1 meminfo lines, $f1 fields, $b1 bytes); fleet settings: $s2 series ($c2 cgroups, $n2 processes, $g2 programs and users, $m2 meminfo lines, $f2 fields, $b2 bytes)" \
    '[ "$s1" = $((11 + m1 + (f1 + 1) * c1 + (f1 + 2) * n1 + (f1 + 1) * g1)) ] &&
    [ "$s2" = $((11 + m2 + (f2 + 1) * c2 + (f2 + 2) * n2 + (f2 + 1) * g2)) ] && [ "$m1" -gt 10 ] &&
    [ "$f2" = 5 ] && [ "$n2" = 10 ] && [ "$g2" -le 10 ] && [ "$s2" -lt "$s1" ] && no_mount /run/totmaps-fleet'
problems=$(journalctl -b -u "$UNIT" ${fleet_cursor:+--after-cursor="$fleet_cursor"} --no-pager -q 2>/dev/null |
    grep -E ': (WARNING|ERROR|CRITICAL): |Traceback')
check fleet-daemon-quiet "no warning from the daemon while serving the fleet path${problems:+: $problems}" '[ -z "$problems" ]'

# --- 17. The alerts: each goes pending on the failure it is for -----------
# Stale: never active while the timer ran (the test's threshold, 20 s, is above
# its period), pending once it stopped.
window=$((($(now_ms) - t_enabled) / 1000))
stale_before=$(promql count "ALERTS{alertname=\"TotmapsfsTextfileStale\"}[${window}s]")
t0=$(now_ms)
systemctl disable --now "$TIMER" 2>/dev/null
last=$(mtime_ms "$PROM_FILE")
if wait_until 40 alert_is TotmapsfsTextfileStale pending && [ "$stale_before" = 0 ]; then
    timing alert-stale-pending $(($(now_ms) - t0))
    pass alert-stale-pending "quiet for the ${window} s the timer ran; pending $(($(now_ms) - t0)) ms after the timer stopped, $(($(now_ms) - last)) ms after the last write (test threshold 20 s)"
else
    fail alert-stale-pending "active series while the timer ran: '$stale_before'; state now '$(promql alert TotmapsfsTextfileStale)'; age $(promql value 'time() - node_textfile_mtime_seconds')"
fi
# A file node_exporter cannot parse: the error, and no mtime series for it.
printf '# TYPE totmapsfs_processes gauge\ntotmapsfs_processes{ 1\n' >"$FLEET_DIR/.bad" && mv "$FLEET_DIR/.bad" "$PROM_FILE"
if wait_until 30 alert_is TotmapsfsTextfileUnreadable pending && prom_is node_textfile_scrape_error 1; then
    pass alert-unreadable-pending "node_textfile_scrape_error 1, no mtime series for it: TotmapsfsTextfileUnreadable pending"
else
    fail alert-unreadable-pending "node_textfile_scrape_error $(promql value node_textfile_scrape_error), TotmapsfsTextfileUnreadable '$(promql alert TotmapsfsTextfileUnreadable)'"
fi
rm -f "$PROM_FILE"
# The daemon's unit failed: no restart this time, then SIGKILL.
mkdir -p /run/systemd/system/$UNIT.d
printf '[Service]\nRestart=no\n' >/run/systemd/system/$UNIT.d/fleet.conf
systemctl daemon-reload
systemctl kill -s KILL --kill-whom=main "$UNIT"
wait_until 10 sh -c "[ \"\$(systemctl is-active $UNIT)\" = failed ]"
if wait_until 30 alert_is TotmapsfsDaemonFailed pending; then
    pass alert-daemon-failed-pending "$UNIT $(systemctl is-active "$UNIT") after SIGKILL with Restart=no: TotmapsfsDaemonFailed pending"
else
    fail alert-daemon-failed-pending "$UNIT $(systemctl is-active "$UNIT"), TotmapsfsDaemonFailed '$(promql alert TotmapsfsDaemonFailed)'"
fi
rm -rf /run/systemd/system/$UNIT.d
systemctl daemon-reload
systemctl reset-failed "$UNIT"

# --- 18. Another directory: refused with the fix named, then allowed -------
ALT=/var/lib/textfile-alt
install -d -m 0755 "$ALT"
echo "TOTMAPSFS_TEXTFILE_DIR=$ALT" >/etc/default/totmapsfs
timeout 30 systemctl start "$TEXTFILE" 2>/dev/null
result=$(prop "$TEXTFILE" Result)
check textfile-other-dir-refused "TOTMAPSFS_TEXTFILE_DIR=$ALT alone: Result=$result, the journal names ReadWritePaths=$ALT" \
    '[ "$result" = exit-code ] && [ ! -e "$ALT/totmapsfs.prom" ] && unit_journal_has "$TEXTFILE" "ReadWritePaths=$ALT"'
systemctl reset-failed "$TEXTFILE"
# The drop-in of docs/monitoring.md ("Into Prometheus: the textfile writer"), plus a look at the sandbox from inside (the only place
# it may write is the textfile directory).
mkdir -p /etc/systemd/system/$TEXTFILE.d
cat >/etc/systemd/system/$TEXTFILE.d/alt.conf <<EOF
[Service]
ReadWritePaths=$ALT
ExecStartPost=/bin/sh -c 'grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status >$ALT/.sandbox; readlink /proc/self/ns/mnt >>$ALT/.sandbox; touch /etc/fleet-x 2>>$ALT/.sandbox; ls /run/totmaps/1 >/dev/null && echo mount-visible >>$ALT/.sandbox'
EOF
systemctl daemon-reload
timeout 30 systemctl start "$TEXTFILE"
check textfile-other-dir-drop-in "with ReadWritePaths=$ALT: Result=$(prop "$TEXTFILE" Result), $ALT/totmapsfs.prom $(stat -c '%a %U' "$ALT/totmapsfs.prom" 2>&1)" \
    '[ "$(prop "$TEXTFILE" Result)" = success ] && grep -q "^totmapsfs_processes " "$ALT/totmapsfs.prom"'
sandbox=$(tr -d '\t' <"$ALT/.sandbox" 2>/dev/null | tr '\n' ' ')
# CAP_SYS_PTRACE (bit 19) only, no new privileges, a seccomp filter, its own
# mount namespace in which /etc is read-only and the mount still answers.
check textfile-hardening-applied "inside the writer: $sandbox(PID 1: $(readlink /proc/1/ns/mnt))" \
    '[[ "$sandbox" == "CapEff:0000000000080000 CapBnd:0000000000080000 NoNewPrivs:1 Seccomp:2 mnt:"* ]] &&
    [[ "$sandbox" != *"$(readlink /proc/1/ns/mnt)"* ]] && [[ "$sandbox" == *"Read-only file system"* ]] &&
    [[ "$sandbox" == *mount-visible* ]]'
rm -rf /etc/systemd/system/$TEXTFILE.d "$ALT"
cp /ci/totmapsfs.default /etc/default/totmapsfs
systemctl daemon-reload

systemctl stop prometheus.service prometheus-node-exporter.service "$PROBE" "$UNIT"
