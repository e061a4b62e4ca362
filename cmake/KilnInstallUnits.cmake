# Runs at install time (install(SCRIPT), component runtime; cmake/KilnPackage.cmake sets
# KILN_DEPLOY_DIR, KILN_INSTALL_BINDIR and KILN_UNIT_STAGING_DIR before it): installs the systemd
# units with ExecStart= and EnvironmentFile= naming where this install puts the binaries and
# kiln.env, and kiln.env itself. The prefix is only known now (`cmake --install --prefix`, or the
# Debian package's /usr), which is why the units are filled in here and not at configure time.
#
# Prefix /usr (the Debian package, or a system install) uses the system's places: units in
# /lib/systemd/system (where Debian 12's packages put theirs) and /etc/kiln/kiln.env. Any other
# prefix keeps everything under it, so an install into a directory never writes to the host:
# <prefix>/lib/systemd/system (systemd reads /usr/local/lib/systemd/system) and
# <prefix>/etc/kiln/kiln.env.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(unit_dir "/lib/systemd/system")
  set(sysconf_dir "/etc")
else()
  set(unit_dir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
  set(sysconf_dir "${CMAKE_INSTALL_PREFIX}/etc")
endif()
if(IS_ABSOLUTE "${KILN_INSTALL_BINDIR}")
  set(bin_dir "${KILN_INSTALL_BINDIR}")
else()
  set(bin_dir "${CMAKE_INSTALL_PREFIX}/${KILN_INSTALL_BINDIR}")
endif()

# One staging directory per prefix: a package build and a `cmake --install` elsewhere may run at
# once from the same build tree.
string(MD5 prefix_hash "${CMAKE_INSTALL_PREFIX}")
set(staging "${KILN_UNIT_STAGING_DIR}/${prefix_hash}")
file(MAKE_DIRECTORY "${staging}")
foreach(unit kiln-orchestrator.service kiln-worker.service)
  file(READ "${KILN_DEPLOY_DIR}/systemd/${unit}.in" text)
  string(REPLACE "@KILN_BINDIR@" "${bin_dir}" text "${text}")
  string(REPLACE "@KILN_SYSCONFDIR@" "${sysconf_dir}" text "${text}")
  if(text MATCHES "@KILN_[A-Z_]+@")
    message(FATAL_ERROR "${unit}.in: ${CMAKE_MATCH_0} is not filled in")
  endif()
  file(WRITE "${staging}/${unit}" "${text}")
  # file(INSTALL) adds DESTDIR and records the file in install_manifest.txt.
  file(INSTALL DESTINATION "${unit_dir}" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES "${staging}/${unit}")
endforeach()

# kiln.env is the operator's to edit: a reinstall keeps an existing one (the Debian package marks
# it a conffile, so dpkg asks instead).
set(env_file "$ENV{DESTDIR}${sysconf_dir}/kiln/kiln.env")
if(EXISTS "${env_file}")
  message(STATUS "Kept: ${env_file} (the operator's; deploy/kiln.env is the example)")
else()
  file(INSTALL DESTINATION "${sysconf_dir}/kiln" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES "${KILN_DEPLOY_DIR}/kiln.env")
endif()
