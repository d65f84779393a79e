#!/bin/bash
# Boots a private systemd as PID 1 of new PID, mount, network, UTS, IPC and
# cgroup namespaces, for tests/systemd.rs on a machine whose own PID 1 is not
# systemd. Nothing of the host changes: the root is a tmpfs in DIR, /usr the
# host's under a private overlay (the daemon is added there as
# /usr/sbin/omdiscd), /etc a copy; the cgroup namespace is rooted at a new
# child cgroup omd-systemd-<pid>, which the caller removes afterwards.
#
#   container.sh DIR BINARY UNIT OPTS
#
# DIR must exist and be empty; the console log is DIR/console.log. The
# caller finds systemd as the child of this process (which becomes
# `unshare`), talks to it with `nsenter -t PID -m -p systemctl ...` and
# stops it with SIGRTMIN+4 (poweroff: a container's systemd exits).
set -euo pipefail

if [ "${1:-}" != inner ]; then
    dir=$1
    # The cgroup2 hierarchy: /sys/fs/cgroup itself, or its "unified" part
    # on a hybrid host.
    cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
    [ -n "$cg2" ] || { echo "no cgroup2 hierarchy is mounted" >&2; exit 10; }
    own=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
    cg="$cg2${own%/}/omd-systemd-$$"
    mkdir "$cg"
    echo "$cg" > "$dir/cgroup"
    echo $$ > "$cg/cgroup.procs"
    exec unshare --pid --fork --mount --net --uts --ipc --cgroup \
        --propagation private "$0" inner "$@"
fi

shift
dir=$1 bin=$2 unit=$3 opts=$4
R=$dir/root
mkdir -p "$R" "$dir/ovl"
mount -t tmpfs -o mode=755 tmpfs "$R"
mount -t tmpfs tmpfs "$dir/ovl"
mkdir -p "$dir/ovl/up/sbin" "$dir/ovl/work"
cp "$bin" "$dir/ovl/up/sbin/omdiscd"
mkdir -p "$R"/{usr,etc,run,var/tmp,var/log,var/lib,tmp,proc,sys,dev,root,home}
mount -t overlay overlay \
    -o "lowerdir=/usr,upperdir=$dir/ovl/up,workdir=$dir/ovl/work" "$R/usr"
for l in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; fi
done
chmod 1777 "$R/tmp" "$R/var/tmp"

cp -a /etc/. "$R/etc/"
: > "$R/etc/machine-id"
echo omd-systemd > "$R/etc/hostname"
cp "$unit" "$R/etc/systemd/system/omdiscd.service"
printf 'OMDISCD_OPTS="%s"\n' "$opts" > "$R/etc/default/omdiscd"
# What the container boots: the journal and nothing else (no getty, no
# services the host's /etc enables).
cat > "$R/etc/systemd/system/omd-test.target" <<'UNIT'
[Unit]
Description=omdiscd test container
Wants=systemd-journald.socket systemd-journald.service
UNIT

# A private /dev: the usual nodes from the host, a pty instance, and the
# console, which is the log file.
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
for n in null zero full random urandom tty; do
    touch "$R/dev/$n"
    mount --bind "/dev/$n" "$R/dev/$n"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
touch "$dir/console.log" "$R/dev/console"
mount --bind "$dir/console.log" "$R/dev/console"

mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
# This namespace's own cgroup2 view, rooted at the cgroup made above.
umount -R "$R/sys/fs/cgroup"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
hostname omd-systemd
ip link set lo up

cd "$R"
mkdir .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
export container=omd-test
exec /lib/systemd/systemd --system --unit=omd-test.target \
    --log-target=console --log-level=info --show-status=no </dev/null >/dev/console 2>&1
