#!/bin/sh
# Runs the dracut or the initramfs-tools scripts of dist/initramfs, as the
# initramfs would, for tests/static_map.rs: start omdiscd, record what it
# did, stop it. Nothing of the host changes: the root they see is a tmpfs
# (in new mount, PID and network namespaces) holding /etc, /run, /dev (null
# and a kmsg file), a fake /proc (the kernel command line, and an openMosix
# 2.4 interface: hpc/admin/config) and the host's /usr read-only. When this
# script ends, the PID namespace ends and takes every process with it.
#
#   initramfs.sh DIR BINARY REPO KIND STATIC CMDLINE
#
# KIND is dracut or initramfs-tools; STATIC 1 puts DIR/openmosix.map into
# the root as /etc/openmosix.map; CMDLINE is the kernel command line. The
# results go to DIR/out: map (the map file), dump (omdiscd --dump), pid,
# setpe (setpe's arguments, one run a line), kmsg (omdiscd's log), script
# (what the scripts logged), stopped (written once the daemon is gone).
set -eu

if [ "${1:-}" != inner ]; then
    exec unshare --mount --pid --fork --net --propagation private sh "$0" inner "$@"
fi
shift
dir=$1 bin=$2 repo=$3 kind=$4 static=$5 cmdline=$6
R=$dir/root
mkdir -p "$R" "$dir/out"
mount -t tmpfs -o mode=755 omd-initramfs-root "$R"
mkdir -p "$R/usr" "$R/etc" "$R/run" "$R/tmp" "$R/dev" "$R/out" \
    "$R/proc/hpc/admin" "$R/opt/bin" "$R/opt/dist" "$R/scripts"
mount --bind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
for l in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$l" ]; then
        ln -s "$(readlink "/$l")" "$R/$l"
    elif [ -d "/$l" ]; then
        mkdir "$R/$l"
        mount --bind "/$l" "$R/$l"
        mount -o remount,bind,ro "$R/$l"
    fi
done
mount --bind "$dir/out" "$R/out"
mknod -m 666 "$R/dev/null" c 1 3
: >"$R/dev/kmsg"
printf '%s\n' "$cmdline" >"$R/proc/cmdline"
: >"$R/proc/hpc/admin/config"
echo 0 >"$R/proc/hpc/admin/mospe"
cp "$bin" "$R/opt/bin/omdiscd"
printf '#!/bin/sh\necho "$@" >> /out/setpe\n' >"$R/opt/bin/setpe"
chmod 755 "$R/opt/bin/setpe"
cp -r "$repo/dist/initramfs/dracut" "$repo/dist/initramfs/initramfs-tools" "$R/opt/dist/"
if [ "$static" = 1 ]; then
    cp "$dir/openmosix.map" "$R/etc/openmosix.map"
fi
# initramfs-tools' functions, as far as the scripts use them: the network
# is lo, up already.
cat >"$R/scripts/functions" <<'EOF'
configure_networking() { :; }
log_success_msg() { echo "success: $*" >>/out/script; }
log_failure_msg() { echo "failure: $*" >>/out/script; }
EOF
ip link set lo up

# What runs in the root: start, record, stop.
cat >"$R/opt/run.sh" <<'EOF'
set -eu
PATH=/opt/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
kind=$1
# Polls `$@` every 20 ms until it succeeds; fails after 10 s.
await() {
    n=0
    until "$@"; do
        n=$((n + 1))
        if [ "$n" -ge 500 ]; then
            echo "timed out: $*" >>/out/script
            exit 1
        fi
        sleep 0.02
    done
}
# dracut's functions, as far as the hooks use them.
getarg() {
    for w in $(cat /proc/cmdline); do
        case $w in "$1"*)
            echo "${w#"$1"}"
            return 0
            ;;
        esac
    done
    return 1
}
getargbool() {
    v=$(getarg "$2=") || {
        [ "$1" = 1 ]
        return
    }
    case $v in 0 | no | off) return 1 ;; *) return 0 ;; esac
}
info() { echo "info: $*" >>/out/script; }
warn() { echo "warn: $*" >>/out/script; }

if [ "$kind" = dracut ]; then
    # The initqueue/online hook, sourced with the interface that came up
    # (dracut runs its hooks without -e).
    set -- lo
    set +e
    . /opt/dist/dracut/90omdiscd/omdiscd-start.sh
    set -e
else
    sh /opt/dist/initramfs-tools/scripts/init-premount/omdiscd
    # It starts omdiscd in the background.
    await test -e /run/omdiscd/initrd.started
fi
test -e /run/omdiscd/initrd.started
cp /run/omdiscd/openmosix.map /out/map
omdiscd --dump >/out/dump
read -r pid </run/omdiscd/openmosix.map.pid
echo "$pid" >/out/pid
if [ "$kind" = dracut ]; then
    set +e
    . /opt/dist/dracut/90omdiscd/omdiscd-stop.sh
    set -e
else
    sh /opt/dist/initramfs-tools/scripts/init-bottom/omdiscd
fi
# The fake /proc has no /proc/PID for the scripts to wait on.
gone() { ! kill -0 "$pid" 2>/dev/null; }
await gone
cp /dev/kmsg /out/kmsg
echo stopped >/out/stopped
EOF
exec chroot "$R" /bin/sh /opt/run.sh "$kind"
