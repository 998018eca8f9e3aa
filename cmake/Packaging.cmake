# Debian packages of Regen, built with CPack from the top-level build:
#   cmake --build BUILD --target package      (or: cd BUILD && cpack -G DEB)
# gives BUILD/packages/{regen-agent,regen-controller,regenctl}_VERSION-1_ARCH.deb.
#
#   regen-agent       /usr/bin/regen-agent, /usr/sbin/regen-install-host (scripts/install-host.sh),
#                     /lib/systemd/system/regen-agent.service, examples under
#                     /usr/share/doc/regen-agent/examples. Depends on regenctl.
#   regen-controller  /usr/bin/regen-controller, /lib/systemd/system/regen-controller.service,
#                     examples under /usr/share/doc/regen-controller/examples. Depends on regenctl.
#   regenctl          /usr/bin/regenctl, alone: both daemon packages depend on it (same version), so
#                     a machine with both daemons has one regenctl and no file conflict.
#
# Library Depends come from dpkg-shlibdeps (package dpkg-dev) run on the binaries; the programs
# the agent drives (libvirtd, OVS, qemu-img) are Recommends, as a host may use qemu:///embed or a
# remote OVSDB. Maintainer scripts (packaging/debian/<package>/) only reload systemd and restart
# a running daemon on upgrade: a fresh install enables nothing, as /etc/regen/*.yaml must be
# written first (regen-install-host writes a sample agent.yaml).
#
# Included at the end of the top-level CMakeLists.txt; the install() rules for the packages are
# here too, so `cmake --install BUILD --component agent` installs what the package holds.

include(GNUInstallDirs)

# Absolute, as Debian 12 keeps units in /lib/systemd/system whatever the prefix: a plain
# `cmake --install` writes the units there too, so stage with DESTDIR=... (as CPack does).
set(REGEN_SYSTEMD_UNIT_DIR "/lib/systemd/system" CACHE PATH
    "Where the packages install systemd units (Debian 12: /lib/systemd/system)")

set(_regen_pkg_dir ${CMAKE_SOURCE_DIR}/packaging)

# --- install rules ---------------------------------------------------------------------------

install(TARGETS regen-agent RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT agent)
install(PROGRAMS ${CMAKE_SOURCE_DIR}/scripts/install-host.sh
        DESTINATION ${CMAKE_INSTALL_SBINDIR} RENAME regen-install-host COMPONENT agent)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/regen-agent.service
        DESTINATION ${REGEN_SYSTEMD_UNIT_DIR} COMPONENT agent)
install(FILES ${CMAKE_SOURCE_DIR}/config/examples/agent.yaml
              ${CMAKE_SOURCE_DIR}/config/examples/agent-lab.yaml
              ${CMAKE_SOURCE_DIR}/config/examples/desired.yaml
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/regen-agent/examples COMPONENT agent)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/README.md
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/regen-agent RENAME README.systemd.md
        COMPONENT agent)

install(TARGETS regen-controller RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT controller)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/regen-controller.service
        DESTINATION ${REGEN_SYSTEMD_UNIT_DIR} COMPONENT controller)
install(FILES ${CMAKE_SOURCE_DIR}/config/examples/controller.yaml
              ${CMAKE_SOURCE_DIR}/config/examples/service.yaml
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/regen-controller/examples
        COMPONENT controller)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/README.md
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/regen-controller RENAME README.systemd.md
        COMPONENT controller)

if(NOT TARGET regenctl)
  message(FATAL_ERROR "Packaging.cmake: no regenctl target (ctl/ missing?)")
endif()
install(TARGETS regenctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT regenctl)
install(FILES ${CMAKE_SOURCE_DIR}/README.md
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/regenctl COMPONENT regenctl)

# --- CPack -----------------------------------------------------------------------------------

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "regen")
set(CPACK_PACKAGE_VENDOR "Regen")
set(CPACK_PACKAGE_CONTACT "Regen maintainers <regen@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)   # RelWithDebInfo binaries are ~10x larger with their debug info
set(CPACK_COMPONENTS_ALL agent controller regenctl)   # nothing else installed gets packaged

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)   # <package>_<version>-<release>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)   # no shared libraries of our own
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)   # maintainer scripts 0755

set(_regen_deb_version "${CPACK_PACKAGE_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

set(CPACK_DEBIAN_REGENCTL_PACKAGE_NAME "regenctl")
set(CPACK_DEBIAN_REGENCTL_PACKAGE_SECTION admin)
set(CPACK_COMPONENT_REGENCTL_DISPLAY_NAME "regenctl")
set(CPACK_COMPONENT_REGENCTL_DESCRIPTION
    "command line of the Regen service-healing cluster\n\
regenctl lists and changes the services, instances, hosts, upgrades and events of a Regen\n\
cluster through regen-controller's admin API. Installed with regen-agent and regen-controller.")

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME "regen-agent")
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "regenctl (= ${_regen_deb_version})")
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS
    "libvirt-daemon-system, qemu-system-x86, qemu-utils, openvswitch-switch, genisoimage")
set(CPACK_DEBIAN_AGENT_PACKAGE_SUGGESTS "tini")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
    ${_regen_pkg_dir}/debian/regen-agent/postinst
    ${_regen_pkg_dir}/debian/regen-agent/prerm
    ${_regen_pkg_dir}/debian/regen-agent/postrm)
set(CPACK_COMPONENT_AGENT_DISPLAY_NAME "regen-agent")
set(CPACK_COMPONENT_AGENT_DESCRIPTION
    "Regen host agent: keeps a KVM host's service instances running\n\
regen-agent runs on every libvirt/KVM host of a Regen cluster. It watches the host's libvirt\n\
domains, reports failures to regen-controller, creates and destroys instances when told to, and\n\
programs the host's Open vSwitch bridge. regen-install-host prepares a host (bridge br-int,\n\
/etc/regen, /var/lib/regen, a sample agent.yaml).")

set(CPACK_DEBIAN_CONTROLLER_PACKAGE_NAME "regen-controller")
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_DEPENDS "regenctl (= ${_regen_deb_version})")
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_SUGGESTS "knot, knot-dnsutils")
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_CONTROL_EXTRA
    ${_regen_pkg_dir}/debian/regen-controller/postinst
    ${_regen_pkg_dir}/debian/regen-controller/prerm
    ${_regen_pkg_dir}/debian/regen-controller/postrm)
set(CPACK_COMPONENT_CONTROLLER_DISPLAY_NAME "regen-controller")
set(CPACK_COMPONENT_CONTROLLER_DESCRIPTION
    "Regen controller: places and heals service instances across KVM hosts\n\
regen-controller keeps the state of a Regen cluster (SQLite), detects failed instances and\n\
hosts, re-creates instances on healthy hosts with the same resources, IP and MAC, updates DNS,\n\
and runs rolling upgrades by update domain that pause for healing and resume.")

include(CPack)
