#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the 6.1 test VM (vm-tests/kernel61.sh, vm-tests/wifi61.sh; image
# by vm-tests/qemu/build-vm61.sh).  Mounts the pseudo file systems, loads the
# modules of /lib/modules/modules.order, runs /kvx/vm61-<kvx.test>.sh and
# powers off.  Every result is a "KVX ..." line on the serial console; the
# host script asserts them.  "KVX end" is always the last line (a test
# script that dies still gets here; a hang is the host's watchdog's business).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox --install -s /bin
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
mkdir -p /sys/fs/bpf /run/netns /var/run
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# A bpffs outside /sys: `ip netns exec` remounts /sys and hides /sys/fs/bpf.
mkdir -p /bpf && mount -t bpf bpf /bpf
ip link set lo up 2>/dev/null

echo "KVX begin"
echo "KVX kver=$(uname -r)"
arg() {
	for a in $(cat /proc/cmdline); do
		case $a in kvx.$1=*) echo "${a#*=}" ;; esac
	done
}
for m in $(cat /lib/modules/modules.order); do
	insmod "/lib/modules/$m.ko" || echo "KVX insmod_failed=$m"
done
echo "KVX t_init=$(cut -d' ' -f1 /proc/uptime)"
t=$(arg test)
if [ -x "/kvx/vm61-$t.sh" ]; then
	"/kvx/vm61-$t.sh"
	echo "KVX script_rc=$?"
else
	echo "KVX error=no test script for kvx.test=$t"
fi
echo "KVX t_end=$(cut -d' ' -f1 /proc/uptime)"
echo "KVX end"
poweroff -f
