#!/bin/sh
# dracut initqueue/online hook (module omdiscd): sourced with the name of an
# interface that has just come up as $1; starts omdiscd once, at the first.
#
#   omdiscd -n --cmdline [--interface <that interface>]
#
# --cmdline: the kernel command-line words omdiscd.<option>=<value> and
# omdiscd.<flag> act as --<option>=<value> and --<flag> (omdiscd.cluster=lab,
# omdiscd.key-file=..., omdiscd.interval=0.5). --interface is added only when
# the kernel command line has no omdiscd.interface=: in an initramfs there is
# often no default route, from which omdiscd would otherwise pick it.
# rd.omdiscd=0 on the kernel command line: not started.
#
# It logs to the kernel log (/dev/kmsg: dmesg, and the journal later): there
# is no syslog daemon in most initramfs images.
# shellcheck source=/dev/null # dracut's, in the initramfs
command -v getarg >/dev/null || . /lib/dracut-lib.sh

omdiscd_start() {
    getargbool 1 rd.omdiscd || return 0
    # One omdiscd, however many interfaces come up.
    [ -e /run/omdiscd/initrd.pid ] && return 0
    mkdir -p /run/omdiscd
    set -- -n --cmdline
    if [ -z "$(getarg omdiscd.interface=)" ] && [ -n "$netif" ]; then
        set -- "$@" --interface "$netif"
    fi
    setsid omdiscd "$@" </dev/null >/dev/kmsg 2>&1 &
    echo $! >/run/omdiscd/initrd.pid
    info "omdiscd: started (PID $!): omdiscd $*"
}

netif=$1
omdiscd_start
