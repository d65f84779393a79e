#!/bin/sh
# dracut cleanup hook (module omdiscd): stops the initramfs' omdiscd before
# the switch to the real root, which starts its own (omdiscd.service). It
# says goodbye, so the other nodes drop it at once and take it back when the
# real root's omdiscd announces. rd.omdiscd.keep=1 on the kernel command
# line keeps it running instead (a node whose real root has no omdiscd);
# its map file stays at /run/omdiscd/openmosix.map, /run being carried over.
# With systemd in the initramfs, systemd ends the hooks' services, and this
# omdiscd with them, at the switch to the real root whatever rd.omdiscd.keep
# says.
# shellcheck source=/dev/null # dracut's, in the initramfs
command -v getarg >/dev/null || . /lib/dracut-lib.sh

omdiscd_stop() {
    [ -e /run/omdiscd/initrd.pid ] || return 0
    getargbool 0 rd.omdiscd.keep && return 0
    read -r omdiscd_pid </run/omdiscd/initrd.pid
    rm -f /run/omdiscd/initrd.pid
    [ -n "$omdiscd_pid" ] || return 0
    kill "$omdiscd_pid" 2>/dev/null || return 0
    # It says goodbye and exits at once; wait up to 2 s.
    omdiscd_n=0
    while [ -d "/proc/$omdiscd_pid" ] && [ "$omdiscd_n" -lt 20 ]; do
        sleep 0.1
        omdiscd_n=$((omdiscd_n + 1))
    done
    unset omdiscd_pid omdiscd_n
    return 0
}

omdiscd_stop
