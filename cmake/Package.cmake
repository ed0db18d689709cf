# The Debian package: `cmake --build build --target package` writes
# build/kvmxdp_<version>_<arch>.deb with CPack.  Its files are what
# `cmake --install` puts under /usr (CPack installs into a staging
# DESTDIR), so the systemd unit and the libvirt hook are written at package
# build time by the packaged binary's own `kvmxdp install --prefix /usr`:
# the same code path and text as a hand-run install, with paths fixed at
# build time (a postinst running it would write an /etc file dpkg does not
# know, which neither an upgrade nor a purge would then handle).
#   /usr/sbin/kvmxdp
#   /usr/lib/systemd/system/kvmxdp@.service (merged /usr: Debian 12's
#     systemd reads it there as it reads /lib/systemd/system)
#   /etc/libvirt/hooks/network.d/kvmxdp, /etc/libvirt/hooks/qemu.d/kvmxdp
#     (conffiles; libvirt >= 6.5 runs every executable of <driver>.d/, so a
#     user's own /etc/libvirt/hooks/qemu or network stays theirs)
#   /usr/share/man/man8/kvmxdp.8.gz
#   /usr/share/bash-completion/completions/kvmxdp
#   /usr/share/zsh/vendor-completions/_kvmxdp
#   /usr/share/doc/kvmxdp/{copyright,changelog.gz} (Debian policy 12.5 and
#     12.7: every package carries both; a version without '-' is a native
#     package, whose changelog is changelog.gz)
# Depends: the shared libraries' packages (dpkg-shlibdeps), and systemd (the
# unit itself; systemctl and systemd-escape in the prerm; kvmxdp runs
# systemctl for the network hook).  The unit's ExecReload= is kvmxdp
# reload: no kill (procps).  The hooks are sh
# running kvmxdp, which reads the XML and the config itself: no python3.
# status reads iptables and nftables rules when those tools are there:
# suggested.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME kvmxdp)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR kvmxdp)
# No public address yet: the reserved .invalid domain (RFC 2606) says so
# rather than a made-up one (lintian rejects root@localhost and a host
# without a dot).  packaging/debian/changelog and copyright name the same.
set(CPACK_PACKAGE_CONTACT "kvmxdp developers <dev@kvmxdp.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "eBPF NAT for KVM guests on a Linux bridge behind a Wi-Fi uplink")
# Lines of at most 80 columns (Debian policy 3.4.1; lintian checks).
set(CPACK_PACKAGE_DESCRIPTION
    "kvmxdp translates the IPv4 traffic of the guests on a Linux bridge
(libvirt's virbr0) to the address of an uplink, typically Wi-Fi, with TC
and XDP programs and BPF maps instead of netfilter rules: masquerading,
static 1:1 NAT and port forwards, following DHCP changes of the uplink.
A systemd unit kvmxdp@BRIDGE.service and a libvirt network hook start it
at boot and when libvirt re-creates the bridge.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Install into the staging directory through DESTDIR with the real prefix,
# so that `kvmxdp install --root $DESTDIR --prefix /usr` writes /usr paths.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # kvmxdp_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libvirt-daemon-system, iptables, nftables")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)

# The Debian changelog's first entry is the package's version: a release
# bumps both (tests/package/check_deb.sh holds them together).  Gzipped with
# -n (no name or time stamp) so that the package is reproducible.
find_program(GZIP gzip REQUIRED)
set(KVX_DEB_CHANGELOG_GZ ${CMAKE_BINARY_DIR}/changelog.gz)
add_custom_command(
  OUTPUT ${KVX_DEB_CHANGELOG_GZ}
  COMMAND sh -c "\"$0\" -9n -c \"$1\" >\"$2\""
          ${GZIP} ${PROJECT_SOURCE_DIR}/packaging/debian/changelog ${KVX_DEB_CHANGELOG_GZ}
  DEPENDS ${PROJECT_SOURCE_DIR}/packaging/debian/changelog
  COMMENT "changelog.gz"
  VERBATIM)
add_custom_target(kvmxdp_deb_changelog ALL DEPENDS ${KVX_DEB_CHANGELOG_GZ})
include(GNUInstallDirs)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/debian/copyright ${KVX_DEB_CHANGELOG_GZ}
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/kvmxdp)
# lintian finds nothing to override.  An override, if one is ever needed,
# goes to /usr/share/lintian/overrides/kvmxdp with a comment saying why
# (tests/package/check_deb.sh requires the comment).
