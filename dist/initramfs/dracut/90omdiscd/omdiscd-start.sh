#!/bin/sh
# dracut initqueue/online hook (module omdiscd): sourced with the name of an
# interface that has just come up as $1; starts omdiscd once, at the first
# interface it can start on.
#
#   omdiscd --cmdline [--interface <that interface>]
#
# --cmdline: the kernel command-line words omdiscd.<option>=<value> and
# omdiscd.<flag> act as --<option>=<value> and --<flag> (omdiscd.cluster=lab,
# omdiscd.key-file=..., omdiscd.interval=0.5). --interface is added only when
# the kernel command line has no omdiscd.interface=: in an initramfs there is
# often no default route, from which omdiscd would otherwise pick it.
# --static-map /etc/openmosix.map,/etc/mosix.map,/etc/hpc.map is added
# only when the kernel command line has no omdiscd.static-map=: a
# hand-written map put into the image (module-setup.sh copies the first of
# them the host has) wins over discovery, as in openMosix: omdiscd loads it
# with setpe -w -f FILE instead of discovering (omdiscd.static-map= on the
# kernel command line, empty: discover all the same).
# rd.omdiscd=0 on the kernel command line: not started.
#
# omdiscd becomes a daemon; the command returns once it announces (0) or
# has failed (its exit status and message). Without a syslog daemon, as in
# most initramfs images, it logs to the kernel log (dmesg).
# shellcheck source=/dev/null # dracut's, in the initramfs
command -v getarg >/dev/null || . /lib/dracut-lib.sh

omdiscd_start() {
    getargbool 1 rd.omdiscd || return 0
    # One omdiscd, however many interfaces come up.
    [ -e /run/omdiscd/initrd.started ] && return 0
    mkdir -p /run/omdiscd
    set -- --cmdline
    if [ -z "$(getarg omdiscd.interface=)" ] && [ -n "$netif" ]; then
        set -- "$@" --interface "$netif"
    fi
    if ! getarg omdiscd.static-map= >/dev/null; then
        set -- "$@" --static-map /etc/openmosix.map,/etc/mosix.map,/etc/hpc.map
    fi
    if omdiscd "$@"; then
        : >/run/omdiscd/initrd.started
        info "omdiscd: started: omdiscd $*"
    else
        # The next interface to come up tries again.
        warn "omdiscd: omdiscd $* failed (exit $?)"
    fi
}

netif=$1
omdiscd_start
