#!/bin/bash
# dracut module "omdiscd": runs omdiscd in the initramfs once the network is
# up, so that a diskless or network-booted openMosix node is in the cluster
# map before its root file system is mounted.
#
# Install: copy this directory to /usr/lib/dracut/modules.d/90omdiscd/, put
# the (static) omdiscd binary in the PATH (e.g. /usr/sbin/omdiscd), then
#   dracut --add omdiscd --force          (or add_dracutmodules+=" omdiscd "
#                                          in /etc/dracut.conf.d/omdiscd.conf)
# The module pulls in dracut's "network" module; the network itself comes
# from the usual dracut arguments (ip=, rd.neednet=1, ...).
#
# At boot, omdiscd-start.sh (an initqueue/online hook) starts
# `omdiscd --cmdline` when the first interface comes up: the settings
# are the kernel command-line words omdiscd.<option>=<value>. See
# dist/initramfs/README.md.

# called by dracut
check() {
    require_binaries omdiscd || return 1
    # Only when asked for (--add omdiscd): it changes what a node announces.
    return 255
}

# called by dracut
depends() {
    echo network
    return 0
}

# called by dracut
install() {
    inst_multiple omdiscd
    # A hand-written map wins over discovery (omdiscd-start.sh passes
    # --static-map): the one the host has goes into the image.
    for f in /etc/openmosix.map /etc/mosix.map /etc/hpc.map; do
        if [ -f "$f" ]; then
            inst_simple "$f"
        fi
    done
    # shellcheck disable=SC2154 # moddir: set by dracut
    inst_hook initqueue/online 95 "$moddir/omdiscd-start.sh"
    inst_hook cleanup 95 "$moddir/omdiscd-stop.sh"
    dracut_need_initqueue
}
