#!/bin/bash
# The boot test's checks, run INSIDE a systemd-nspawn-booted container by
# citest.service (see tests/systemd/test_boot.py, which builds the two .debs,
# boots the container and reads the results). This script first installs the
# package with apt-get (section 0: install, then an upgrade over a lower
# version), exercises the running service through systemctl (sections 1-18),
# and ends with apt-get remove and purge (section 19).
#
# Output: one line per check, "PASS <name>: <detail>" or "FAIL <name>: <detail>",
# and "TIME <name> <ms>" lines, to the console and to /ci-out/result.log; the
# unit's journal goes to /ci-out/journal.log (the fleet path's units': to
# /ci-out/fleet-journal.log). Exit status: number of failures (capped), 0 when
# all passed; citest.service hands it to systemd-nspawn. Sections 12-18, the
# fleet path (node_exporter, Prometheus, the textfile timer), are in
# fleet-test.sh, sourced at the end.
#
# /usr is the host's under a throwaway overlay, /var/lib/dpkg a copy of the
# host's database (so apt-get sees what the host has installed: the .deb's
# Depends), /etc and the rest of /var a fresh tmpfs; no network. No
# /etc/alternatives, so no awk; coreutils, grep, sed, util-linux and bash
# only (and, for the fleet path's two helpers, python3).

set -u
export LC_ALL=C
UNIT=totmapsfs.service
MP=/run/totmaps
OUT=/ci-out/result.log
: >"$OUT"
FAILS=0
BG_PIDS=()

# CapabilityBoundingSet=CAP_SYS_ADMIN CAP_SYS_PTRACE: bits 21 and 19.
EXPECTED_CAPBND=0000000000280000

log() { echo "$*" | tee -a "$OUT"; }
pass() { log "PASS $1: ${2:-ok}"; }
fail() { log "FAIL $1: ${2:-failed}"; FAILS=$((FAILS + 1)); }
check() { # check NAME DETAIL CONDITION: PASS when the shell CONDITION (eval'd) holds
    if eval "$3"; then pass "$1" "$2"; else fail "$1" "$2"; fi
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
timing() { log "TIME $1 $2"; }
prop() { systemctl show -P "$2" "$1" 2>/dev/null; }
main_pid() { prop "$UNIT" MainPID; }

# The fuse.totmapsfs mounts exactly at $1, one line each (mountinfo field 5 is
# the mount point; the fstype follows the " - " separator).
mounts_at() {
    grep -E "^([^ ]+ ){4}$1 .* - fuse\.totmapsfs " /proc/self/mountinfo
}
has_mount() { [ -n "$(mounts_at "$1")" ]; }
no_mount() { [ -z "$(mounts_at "$1")" ]; }
one_mount() { [ "$(mounts_at "$1" | wc -l)" -eq 1 ]; }
# A totmaps file answers with a Pss line (bounded: a hung mount must not hang us).
reads_pss() { timeout 5 cat "$1" 2>/dev/null | grep -q '^Pss: '; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
is_nobody() { grep -Eq "^Uid:\s+65534\s+65534\s+65534\s" /proc/"$1"/status 2>/dev/null; }
# A process of another user to read: NOBODY_PID, uid 65534. (setpriv itself
# in the background, not as_nobody: $! of a backgrounded function would be a
# root subshell.)
start_nobody() {
    setpriv --reuid=65534 --regid=65534 --clear-groups sleep 300 &
    NOBODY_PID=$!
    BG_PIDS+=("$NOBODY_PID")
    wait_until 5 is_nobody "$NOBODY_PID"
}
# journal_has PATTERN [SECONDS]: journald receives the unit's stderr
# asynchronously, so wait a little for a line to show up.
journal_has() {
    local deadline=$(($(now_ms) + ${2:-5} * 1000))
    while true; do
        journalctl -q -b -u "$UNIT" --no-pager 2>/dev/null | grep -q -- "$1" && return 0
        [ "$(now_ms)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}
# wait_until SECONDS COMMAND...: poll every 50 ms.
wait_until() {
    local deadline=$(($(now_ms) + $1 * 1000))
    shift
    until "$@"; do
        [ "$(now_ms)" -ge "$deadline" ] && return 1
        sleep 0.05
    done
}
cleanup_bg() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    BG_PIDS=()
}

log "boot test: $(uname -r), $(systemctl --version | head -1)"

# --- 0. The package: install, then upgrade over it -------------------------
# /ci/debs holds two builds of this tree: DEB_LOW (a lower version) and
# DEB_NEW. apt-get resolves their Depends against the host's database; with
# no network, anything missing fails the install.
# shellcheck source=/dev/null
. /ci/debs/versions
DEFAULTS=/etc/default/totmapsfs
# /etc is a fresh tmpfs: the host's man-db trigger, which installing a man
# page runs, wants Debian's man user (base-passwd's uid 6, gid 12).
grep -q '^man:' /etc/group || echo 'man:x:12:' >>/etc/group
grep -q '^man:' /etc/passwd || echo 'man:x:6:12:man:/var/cache/man:/usr/sbin/nologin' >>/etc/passwd
# A container image's /usr/sbin/policy-rc.d (Docker's exits 101) forbids
# maintainer scripts to start services; a Debian host has none. Gone from
# this container's throwaway /usr overlay only.
rm -f /usr/sbin/policy-rc.d
mkdir -p /etc/apt/apt.conf.d /etc/apt/preferences.d /etc/apt/sources.list.d /var/cache/apt/archives/partial \
    /var/lib/apt/lists/partial /var/log/apt
touch /etc/apt/sources.list
apt_get() { DEBIAN_FRONTEND=noninteractive timeout 120 apt-get -y -q "$@" >>/ci-out/apt.log 2>&1; }
pkg_version() { dpkg-query -W -f='${Status} ${Version}' totmapsfs 2>/dev/null; }
t0=$(now_ms)
cd /ci/debs && apt_get install "./totmapsfs_${DEB_LOW}_$(dpkg --print-architecture).deb"
rc=$?
cd /
timing apt-install $(($(now_ms) - t0))
# Type=notify: the postinst's start returns once the mount answers, so the
# very first read below is not retried.
check deb-install "apt-get install exit $rc: $(pkg_version); is-enabled=$(systemctl is-enabled "$UNIT" 2>&1), is-active=$(systemctl is-active "$UNIT")" \
    '[ "$rc" = 0 ] && [ "$(pkg_version)" = "install ok installed $DEB_LOW" ] &&
    [ "$(systemctl is-enabled "$UNIT")" = enabled ] && [ "$(systemctl is-active "$UNIT")" = active ] &&
    one_mount "$MP" && reads_pss "$MP/self/totmaps"'
check deb-files "command, man page, rules, conffile $DEFAULTS" \
    '[ "$(command -v totmapsfs)" = /usr/bin/totmapsfs ] && [ -x /usr/bin/totmapsfs-textfile ] &&
    [ -f /usr/share/man/man8/totmapsfs.8.gz ] && [ -f /usr/share/totmapsfs/prometheus/totmapsfs.rules.yml ] &&
    dpkg-query -W -f="\${Conffiles}" totmapsfs | grep -q "^ $DEFAULTS "'
check deb-textfile-not-enabled "timer is-enabled=$(systemctl is-enabled totmapsfs-textfile.timer 2>&1), is-active=$(systemctl is-active totmapsfs-textfile.timer)" \
    '[ "$(systemctl is-enabled totmapsfs-textfile.timer)" = disabled ] &&
    [ "$(systemctl is-active totmapsfs-textfile.timer)" = inactive ]'
# The admin edits the conffile; the upgrade keeps the edit and restarts the
# daemon (a new process, started after the upgrade began), which reads it.
echo 'TOTMAPSFS_OPTIONS="--max-age 2"' >>"$DEFAULTS"
cp "$DEFAULTS" /tmp/defaults.edited
before_pid=$(main_pid)
before_start=$(prop "$UNIT" ExecMainStartTimestampMonotonic)
cd /ci/debs && apt_get install "./totmapsfs_${DEB_NEW}_$(dpkg --print-architecture).deb"
rc=$?
cd /
after_pid=$(main_pid)
after_start=$(prop "$UNIT" ExecMainStartTimestampMonotonic)
check deb-upgrade "exit $rc: $(pkg_version) over $DEB_LOW; MainPID $before_pid -> $after_pid, started at $before_start -> $after_start us" \
    '[ "$rc" = 0 ] && [ "$(pkg_version)" = "install ok installed $DEB_NEW" ] &&
    [ "${after_pid:-0}" != 0 ] && [ "$after_pid" != "$before_pid" ] && [ "${after_start:-0}" -gt "${before_start:-0}" ] &&
    [ "$(systemctl is-active "$UNIT")" = active ] && one_mount "$MP" && reads_pss "$MP/self/totmaps"'
check deb-upgrade-kept-conffile "the edit is still in $DEFAULTS and the new daemon runs with it: $(tr '\0' ' ' </proc/"${after_pid:-0}"/cmdline 2>/dev/null)" \
    'cmp -s "$DEFAULTS" /tmp/defaults.edited && tr "\0" " " </proc/"$after_pid"/cmdline | grep -q -- "--max-age 2 "'
# The rest runs the new version with the shipped, unedited settings.
cp /ci/totmapsfs.default "$DEFAULTS"
timeout 30 systemctl restart "$UNIT"

# --- 1. Started by the package; "active" means the mount answers -----------
# The unit is Type=notify, so systemctl start (restart) returning means
# READY=1 was sent. The very first access below is not retried: active must
# already imply a serving mount.
state=$(systemctl is-active "$UNIT")
if [ "$state" = active ] && has_mount "$MP" && reads_pss "$MP/self/totmaps"; then
    pass boot-active-and-answering "active after restart, first read through $MP answered"
else
    fail boot-active-and-answering "is-active=$state; mountinfo: $(mounts_at "$MP" | head -1)"
fi
exit_us=$(prop "$UNIT" InactiveExitTimestampMonotonic)
ready_us=$(prop "$UNIT" ActiveEnterTimestampMonotonic)
if [ "${ready_us:-0}" -gt 0 ]; then
    timing start-to-ready $(((ready_us - exit_us) / 1000))
fi

# --- 2. The hardening is in force and did not hide the mount ---------------
MAIN=$(main_pid)
MAIN=${MAIN:-0}
# A private mount namespace would make the mount invisible outside the service.
ns_main=$(readlink /proc/"$MAIN"/ns/mnt) ns_1=$(readlink /proc/1/ns/mnt) ns_self=$(readlink /proc/self/ns/mnt)
check same-mount-namespace "daemon $ns_main, PID 1 $ns_1, this script $ns_self" \
    '[ -n "$ns_1" ] && [ "$ns_main" = "$ns_1" ] && [ "$ns_self" = "$ns_1" ]'
capbnd=$(grep '^CapBnd:' /proc/"$MAIN"/status | cut -f2)
nnp=$(grep '^NoNewPrivs:' /proc/"$MAIN"/status | cut -f2)
seccomp=$(grep '^Seccomp:' /proc/"$MAIN"/status | cut -f2)
check hardening-applied "CapBnd=$capbnd NoNewPrivs=$nnp Seccomp=$seccomp" \
    '[ "$capbnd" = "$EXPECTED_CAPBND" ] && [ "$nnp" = 1 ] && [ "$seccomp" = 2 ]'
# After mounting the daemon itself lowers its effective set to CAP_SYS_PTRACE
# (bit 19), in every thread; CAP_SYS_ADMIN stays permitted for the unmount.
caps_eff=$(cat /proc/"$MAIN"/task/*/status | grep '^CapEff:' | cut -f2 | sort -u | tr '\n' ' ')
check dropped-after-mount "CapEff per thread: $caps_eff" '[ "$caps_eff" = "0000000000080000 " ]'
# OOMScoreAdjust=-900: systemd can only lower it holding CAP_SYS_RESOURCE
# (capability 24), which some container hosts withhold; it then ignores it.
oom=$(cat /proc/"$MAIN"/oom_score_adj)
pid1_eff=$(grep '^CapEff:' /proc/1/status | cut -f2)
if [ $((0x$pid1_eff >> 24 & 1)) = 1 ]; then
    check oom-score-adjust "oom_score_adj=$oom" '[ "$oom" = -900 ]'
else
    check oom-score-adjust "configured $(prop "$UNIT" OOMScoreAdjust); oom_score_adj=$oom: this container's PID 1 lacks CAP_SYS_RESOURCE" \
        '[ "$(prop "$UNIT" OOMScoreAdjust)" = -900 ]'
fi

# --- 3. Reads through the mount ------------------------------------------
read -r caller_pid self_link < <(sh -c 'echo $$; exec readlink /run/totmaps/self' | tr '\n' ' ')
check read-self "self -> ${self_link:-?} for caller ${caller_pid:-?}; $MP/self/totmaps has Pss" \
    '[ -n "$caller_pid" ] && [ "$caller_pid" = "$self_link" ] && reads_pss "$MP/self/totmaps"'
check read-pid1-as-root "PID 1 (root, all capabilities)" 'reads_pss "$MP/1/totmaps"'
start_nobody
check read-other-user-as-root "root reads uid 65534's pid $NOBODY_PID ($(grep '^Uid:' /proc/$NOBODY_PID/status | tr '\t' ' '))" \
    'is_nobody $NOBODY_PID && reads_pss "$MP/$NOBODY_PID/totmaps"'
check nobody-reads-own "uid 65534 reads its own self/totmaps (allow_other)" \
    'as_nobody sh -c "timeout 5 cat /run/totmaps/self/totmaps | grep -q \"^Pss: \""'
if as_nobody timeout 5 cat "$MP/1/totmaps" >/dev/null 2>/tmp/denied; then
    fail nobody-denied-pid1 "uid 65534 could read PID 1's totmaps"
else
    pass nobody-denied-pid1 "uid 65534 refused PID 1: $(head -1 /tmp/denied)"
fi

# --- 4. Logs -----------------------------------------------------------------
check journal-serving "journal has the daemon's 'serving $MP' line" 'journal_has "serving $MP ("'

# --- 5. SIGHUP is ignored, SIGUSR1 dumps stacks ---------------------------
systemctl kill -s HUP --kill-whom=main "$UNIT"
sleep 0.3
check sighup-ignored "after SIGHUP: same pid $MAIN, active, mount answers, logged" \
    '[ "$(main_pid)" = "$MAIN" ] && [ "$(systemctl is-active "$UNIT")" = active ] &&
    reads_pss "$MP/self/totmaps" && journal_has "INFO: SIGHUP"'
systemctl kill -s USR1 --kill-whom=main "$UNIT"
check sigusr1-stack-dump "faulthandler's dump in the journal, still serving" \
    'journal_has "most recent call first" && [ "$(main_pid)" = "$MAIN" ] &&
    reads_pss "$MP/self/totmaps"'

# --- 6. kill -9: systemd restarts it, the mount comes back by itself -------
serving_again() {
    local pid
    pid=$(main_pid)
    [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$pid" != "$MAIN" ] &&
        [ "$(systemctl is-active "$UNIT")" = active ] && reads_pss "$MP/self/totmaps"
}
t0=$(now_ms)
# (Never "kill -9 0": that would be this script's own process group.)
if ! [ "${MAIN:-0}" -gt 1 ] 2>/dev/null; then
    fail restart-after-kill9 "no main pid to kill (MainPID=${MAIN:-})"
elif kill -9 "$MAIN" && wait_until 20 serving_again; then
    t=$(($(now_ms) - t0))
    timing restart-after-kill9 "$t"
    pass restart-after-kill9 "new pid $(main_pid) serving ${t} ms after SIGKILL (NRestarts=$(prop "$UNIT" NRestarts))"
else
    fail restart-after-kill9 "not serving 20 s after SIGKILL: $(systemctl is-active "$UNIT"), pid $(main_pid)"
fi
check restart-left-one-mount "exactly one fuse.totmapsfs at $MP (dead one removed)" 'one_mount "$MP"'

# --- 7. Stop with reads in flight: exit 0, unmounted -----------------------
for i in 1 2 3 4; do
    (while :; do cat "$MP/1/totmaps" "$MP/self/totmaps" >/dev/null 2>&1; done) &
    BG_PIDS+=("$!")
done
sleep 0.3
t0=$(now_ms)
timeout 60 systemctl stop "$UNIT"
t=$(($(now_ms) - t0))
timing stop "$t"
code=$(prop "$UNIT" ExecMainCode) status=$(prop "$UNIT" ExecMainStatus) result=$(prop "$UNIT" Result)
# ExecMainCode 1 is CLD_EXITED: a normal exit, not a signal (SIGKILL at the timeout).
check stop-exit-0 "stopped in ${t} ms with readers running: Result=$result ExecMainCode=$code ExecMainStatus=$status" \
    '[ "$result" = success ] && [ "$code" = 1 ] && [ "$status" = 0 ] && [ "$t" -lt 15000 ]'
check stop-unmounted "no fuse.totmapsfs left at $MP in /proc/self/mountinfo" 'no_mount "$MP"'
check stop-logged "journal has 'unmounted $MP'" 'journal_has "unmounted $MP"'
cleanup_bg

# --- 8. A stale mount from a daemon killed outside systemd is cleared ------
/usr/bin/totmapsfs "$MP" 2>/dev/null &
rogue=$!
if wait_until 10 reads_pss "$MP/self/totmaps"; then
    kill -9 "$rogue"
    wait "$rogue" 2>/dev/null
    stale=$(stat "$MP" 2>&1 >/dev/null)
    t0=$(now_ms)
    timeout 30 systemctl start "$UNIT"
    t=$(($(now_ms) - t0))
    check stale-mount-cleared "left '$stale'; start took ${t} ms, then one answering mount" \
        'one_mount "$MP" && reads_pss "$MP/self/totmaps"'
    timeout 30 systemctl stop "$UNIT"
else
    fail stale-mount-cleared "could not run the daemon by hand"
    kill -9 "$rogue" 2>/dev/null
fi

# --- 9. Options from /etc/default/totmapsfs, no unit edit ------------------
cp /ci/totmapsfs.default /etc/default/totmapsfs
printf '%s\n' 'TOTMAPSFS_MOUNTPOINT=/run/totmaps-alt' \
    'TOTMAPSFS_OPTIONS="--source smaps --max-age 0 --debug"' >>/etc/default/totmapsfs
if timeout 30 systemctl start "$UNIT"; then
    check env-file-options "mounted at /run/totmaps-alt with --source smaps --debug" \
        'reads_pss /run/totmaps-alt/self/totmaps && journal_has "serving /run/totmaps-alt (source smaps" &&
        journal_has "totmapsfs: DEBUG: "'
else
    fail env-file-options "start with /etc/default/totmapsfs failed"
fi
timeout 30 systemctl stop "$UNIT"
check env-file-stop-unmounted "no mount left at /run/totmaps-alt" 'no_mount /run/totmaps-alt'
cp /ci/totmapsfs.default /etc/default/totmapsfs

# --- 10. The capability set is minimal: drop either one and something breaks --
# Each run: a drop-in narrowing CapabilityBoundingSet=, no restarts.
cap_run() { # cap_run CAPS...: start with only CAPS; print what worked
    mkdir -p /etc/systemd/system/$UNIT.d
    printf '[Service]\nRestart=no\nCapabilityBoundingSet=\nCapabilityBoundingSet=%s\n' "$*" \
        >/etc/systemd/system/$UNIT.d/cap.conf
    systemctl daemon-reload
    local started=no own=no other=no pid1=no
    timeout 30 systemctl start "$UNIT" 2>/dev/null && started=yes
    if [ $started = yes ]; then
        reads_pss "$MP/self/totmaps" && own=yes
        is_nobody "$NOBODY_PID" && reads_pss "$MP/$NOBODY_PID/totmaps" && other=yes
        reads_pss "$MP/1/totmaps" && pid1=yes
    fi
    timeout 30 systemctl stop "$UNIT"
    systemctl reset-failed "$UNIT" 2>/dev/null
    rm -rf /etc/systemd/system/$UNIT.d
    systemctl daemon-reload
    echo "started=$started own=$own other-user=$other pid1=$pid1"
}
start_nobody
r=$(cap_run CAP_SYS_PTRACE)
check cap-needs-SYS_ADMIN "without CAP_SYS_ADMIN: $r" '[ "${r%% *}" = started=no ]'
r=$(cap_run CAP_SYS_ADMIN)
# "own" is a root process with full capabilities: without CAP_SYS_PTRACE the
# daemon may not read it either (its capabilities exceed the daemon's).
check cap-needs-SYS_PTRACE "without CAP_SYS_PTRACE: $r" \
    '[ "${r%% own=*}" = started=yes ] && [ "${r#* other-user=}" = "no pid1=no" ]'
r=$(cap_run CAP_SYS_ADMIN CAP_SYS_PTRACE)
check cap-shipped-set-suffices "CAP_SYS_ADMIN CAP_SYS_PTRACE: $r" \
    '[ "$r" = "started=yes own=yes other-user=yes pid1=yes" ]'
check cap-no-mount-left "no mount left after the capability runs" 'no_mount "$MP"'
cleanup_bg

# --- 11. Enabled for every boot (by the package) -------------------------
check enable "is-enabled=$(systemctl is-enabled "$UNIT"), wanted by multi-user.target" \
    '[ -L /etc/systemd/system/multi-user.target.wants/$UNIT ]'

# --- 12-18. The fleet path: node_exporter, Prometheus, the textfile timer --
# shellcheck source=fleet-test.sh
. /ci/bin/fleet-test.sh

# --- 19. apt-get remove: stopped, unmounted, settings kept; purge: gone --
# With the textfile timer running, as on a fleet host: it Requires= the
# daemon, so the package's prerm stops it first, or it would start the
# daemon again.
cp /tmp/defaults.edited "$DEFAULTS"
systemctl enable --now totmapsfs-textfile.timer 2>/dev/null
timeout 30 systemctl start "$UNIT"
pid=$(main_pid)
timer_before=$(systemctl is-active totmapsfs-textfile.timer)
apt_get remove totmapsfs
rc=$?
check deb-remove "exit $rc: $(pkg_version); is-active=$(systemctl is-active "$UNIT"), pid ${pid:-?} $(kill -0 "${pid:-0}" 2>/dev/null && echo alive || echo gone); textfile timer $timer_before -> $(systemctl is-active totmapsfs-textfile.timer)" \
    '[ "$rc" = 0 ] && [ "$(pkg_version)" = "deinstall ok config-files $DEB_NEW" ] && [ "$timer_before" = active ] &&
    [ "$(systemctl is-active "$UNIT")" != active ] && ! kill -0 "${pid:-0}" 2>/dev/null && [ ! -e /usr/bin/totmapsfs ] &&
    [ "$(systemctl is-active totmapsfs-textfile.timer)" != active ]'
check deb-remove-no-mount "no fuse.totmapsfs in /proc/self/mountinfo: $(grep -c " - fuse\.totmapsfs " /proc/self/mountinfo) line(s)" \
    '! grep -q " - fuse\.totmapsfs " /proc/self/mountinfo'
check deb-remove-kept-conffile "the edited $DEFAULTS is kept by remove" 'cmp -s "$DEFAULTS" /tmp/defaults.edited'
apt_get purge totmapsfs
rc=$?
check deb-purge "exit $rc: $(pkg_version || echo 'not known to dpkg'); $DEFAULTS $([ -e "$DEFAULTS" ] && echo exists || echo gone)" \
    '[ "$rc" = 0 ] && [ -z "$(pkg_version)" ] && [ ! -e "$DEFAULTS" ] &&
    [ ! -e /etc/systemd/system/multi-user.target.wants/$UNIT ]'

journalctl -b -u "$UNIT" --no-pager -o short-monotonic >/ci-out/journal.log 2>&1
journalctl -b -u totmapsfs-textfile.service -u prometheus-node-exporter.service -u prometheus.service \
    -u fleet-probe.service --no-pager -o short-monotonic >/ci-out/fleet-journal.log 2>&1
log "DONE: $FAILS failed"
[ "$FAILS" -gt 100 ] && FAILS=100
exit "$FAILS"
