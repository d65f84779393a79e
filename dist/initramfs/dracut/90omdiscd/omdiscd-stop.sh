#!/bin/sh
# dracut cleanup hook (module omdiscd): stops the omdiscd that
# omdiscd-start.sh started, before the switch to the real root, which starts
# its own (omdiscd.service). It says goodbye, so the other nodes drop the
# node at once and take it back when the real root's omdiscd announces.
# rd.omdiscd.keep=1 on the kernel command line keeps it running instead (a
# node whose real root has no omdiscd); its map file stays at
# /run/omdiscd/openmosix.map, /run being carried over.
# With systemd in the initramfs, systemd ends the hooks' services, and this
# omdiscd with them, at the switch to the real root whatever rd.omdiscd.keep
# says.
# shellcheck source=/dev/null # dracut's, in the initramfs
command -v getarg >/dev/null || . /lib/dracut-lib.sh

omdiscd_stop() {
    [ -e /run/omdiscd/initrd.started ] || return 0
    getargbool 0 rd.omdiscd.keep && return 0
    rm -f /run/omdiscd/initrd.started
    # Its PID is in its lock file: --pid-file, else the map file's path
    # with .pid added.
    omdiscd_pidfile=$(getarg omdiscd.pid-file=)
    if [ -z "$omdiscd_pidfile" ]; then
        omdiscd_pidfile=$(getarg omdiscd.map-file=)
        omdiscd_pidfile=${omdiscd_pidfile:-/run/omdiscd/openmosix.map}.pid
    fi
    omdiscd_pid=
    [ -r "$omdiscd_pidfile" ] && read -r omdiscd_pid <"$omdiscd_pidfile"
    if [ -n "$omdiscd_pid" ] && kill "$omdiscd_pid" 2>/dev/null; then
        # It says goodbye and exits at once; wait up to 2 s.
        omdiscd_n=0
        while [ -d "/proc/$omdiscd_pid" ] && [ "$omdiscd_n" -lt 20 ]; do
            sleep 0.1
            omdiscd_n=$((omdiscd_n + 1))
        done
    fi
    unset omdiscd_pidfile omdiscd_pid omdiscd_n
    return 0
}

omdiscd_stop
