#!/bin/sh
# /init of the numa-vm guest initramfs (runs under busybox ash as PID 1).
#
# Built into the initramfs by scripts/numa-vm; the initramfs cache is keyed
# on this file's checksum, so editing it rebuilds the image on the next run.
#
# What it does:
#   1. loads the virtio / 9p / overlay modules listed in /lib/modules/load-order
#   2. mounts the host's root (9p tag "hostroot", read-only) as the lower layer
#      of an overlay whose upper layer is a tmpfs, at /newroot
#   3. mounts the per-run directory (9p tag "numavmrun", read-only) at
#      /newroot/run/numa-vm; it holds "config" (read here) and "cmd.sh"
#      (executed with the host's bash inside the chroot)
#   4. mounts /proc /sys /dev /tmp ... and any --share directories in /newroot
#   5. reserves hugepages, prints a one-line summary of the NUMA topology
#   6. runs cmd.sh chrooted into /newroot between begin/end markers and
#      prints the exit status, then powers the guest off.
#
# Lines the host harness understands (NONCE comes from the run config):
#   @@NUMA-VM-INFO:NONCE@@ text          -> "text" is copied to the host's stderr
#   @@NUMA-VM-BEGIN:NONCE@@              -> command output starts after this line
#   @@NUMA-VM-END:NONCE@@ NUMA-VM-EXIT=N -> command output ended, exit status N

/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node (building it would need mknod, i.e.
# root), so the kernel started us without stdio; attach it now.
exec 0</dev/console 1>/dev/console 2>&1

poweroff_now() {
	sync
	poweroff -f
	# poweroff -f should not return; make sure the VM goes away regardless.
	echo o >/proc/sysrq-trigger
	sleep 10
}

die() {
	echo "numa-vm-init: error: $*"
	poweroff_now
}

# ---- 1. modules --------------------------------------------------------------
# load-order is written by the host (dependency order from modules.dep,
# modules built into the kernel are left out).
while read -r mod; do
	[ -n "$mod" ] || continue
	insmod "/lib/modules/$mod.ko" || die "insmod $mod failed"
done </lib/modules/load-order

# ---- 2. host root + overlay ---------------------------------------------------
mkdir -p /mnt/lower /mnt/rw /newroot /mnt/run
# cache=loose: the host root is exported read-only and the guest is throw-away,
# so letting the guest page-cache host files is safe and much faster under TCG.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro hostroot /mnt/lower ||
	die "cannot mount the host root over 9p (tag hostroot)"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /newroot ||
	die "cannot mount the overlay"

# ---- 3. per-run directory -----------------------------------------------------
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro numavmrun /mnt/run ||
	die "cannot mount the run directory over 9p (tag numavmrun)"
[ -r /mnt/run/config ] || die "run config missing"

NONCE=
NODES=
while read -r key rest; do
	case "$key" in
	nonce) NONCE=$rest ;;
	nodes) NODES=$rest ;;
	esac
done </mnt/run/config
[ -n "$NONCE" ] || die "no nonce in run config"

info() { echo "@@NUMA-VM-INFO:$NONCE@@ $*"; }

# ---- 4. filesystems inside the chroot ------------------------------------------
R=/newroot
for d in proc sys dev tmp run; do mkdir -p "$R/$d"; done
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t devtmpfs devtmpfs "$R/dev"
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/hugepages"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t hugetlbfs hugetlbfs "$R/dev/hugepages" 2>/dev/null || true
# cgroup v2, for tests that restrict the process's cpuset (cpuset.mems).
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup" 2>/dev/null || true
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mkdir -p "$R/run/numa-vm"
mount --bind /mnt/run "$R/run/numa-vm"

# Shares: "share TAG PATH" (PATH is the rest of the line, may contain spaces).
while read -r key tag path; do
	[ "$key" = share ] || continue
	mkdir -p "$R$path" || die "cannot create mount point $path"
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,rw "$tag" "$R$path" ||
		die "cannot mount share $path (tag $tag)"
done </mnt/run/config

# ---- 5. hugepages + summary ---------------------------------------------------
# "hugepages SIZE_KB NODE COUNT"
while read -r key size node count; do
	[ "$key" = hugepages ] || continue
	f=/sys/devices/system/node/node$node/hugepages/hugepages-${size}kB/nr_hugepages
	if [ ! -w "$f" ]; then
		info "numa-vm: warning: node$node: no ${size}kB hugepage pool ($f missing); requested $count, obtained 0"
		continue
	fi
	echo "$count" >"$f" 2>/dev/null
	got=$(cat "$f")
	if [ "$got" -lt "$count" ]; then
		info "numa-vm: warning: node$node: ${size}kB hugepages requested $count, obtained $got"
	fi
done </mnt/run/config

summary() {
	nodes=0
	detail=
	for n in /sys/devices/system/node/node[0-9]*; do
		[ -d "$n" ] || continue
		id=${n##*/node}
		nodes=$((nodes + 1))
		cpus=$(cat "$n/cpulist")
		[ -n "$cpus" ] || cpus=-
		kb=$(sed -n 's/.*MemTotal: *\([0-9]*\) kB.*/\1/p' "$n/meminfo")
		hp=
		for h in 2048 1048576; do
			c=$(cat "$n/hugepages/hugepages-${h}kB/nr_hugepages" 2>/dev/null || echo 0)
			if [ "${c:-0}" -gt 0 ]; then
				if [ $h = 2048 ]; then hp="$hp hp2m=$c"; else hp="$hp hp1g=$c"; fi
			fi
		done
		detail="$detail; node$id cpus=$cpus mem=$((${kb:-0} / 1024))M$hp"
	done
	ncpu=$(grep -c '^processor' /proc/cpuinfo)
	up=$(cut -d' ' -f1 /proc/uptime)
	echo "numa-vm: kernel=$(uname -r) nodes=$nodes cpus=$ncpu$detail; ready after ${up}s"
}
# Sort order of node[0-9]* is lexical (node10 before node2); fine for a summary.
info "$(summary)"
seen=$(ls -d /sys/devices/system/node/node[0-9]* | wc -l)
if [ -n "$NODES" ] && [ "$seen" != "$NODES" ]; then
	info "numa-vm: warning: requested $NODES nodes but the guest kernel sees $seen"
fi

# ---- 6. run the command ---------------------------------------------------------
# Clean environment; cmd.sh (generated by the host) sets PATH, the --env
# variables and the working directory, then execs the command with the host's
# bash. stdin is /dev/null: the console is not connected to anything useful.
echo "@@NUMA-VM-BEGIN:$NONCE@@"
env -i HOME=/root TERM=dumb chroot "$R" /bin/bash /run/numa-vm/cmd.sh </dev/null
status=$?
# If the output did not end in a newline the marker lands mid-line; the host
# harness handles that.
echo "@@NUMA-VM-END:$NONCE@@ NUMA-VM-EXIT=$status"
poweroff_now
