# The installed CMake package (find_package(Kiln) → Kiln::sdk, Kiln::common, Kiln::proto) and
# the Debian package of the binaries. Included at the end of the top-level CMakeLists, once every
# installed target (kiln_library/kiln_binary INSTALL, proto/CMakeLists.txt) exists.
include(CMakePackageConfigHelpers)

set(KILN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Kiln)
install(EXPORT KilnTargets NAMESPACE Kiln:: DESTINATION ${KILN_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/KilnConfig.cmake.in
  ${PROJECT_BINARY_DIR}/KilnConfig.cmake INSTALL_DESTINATION ${KILN_CMAKE_DIR})
# 0.x: only the same minor version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/KilnConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/KilnConfig.cmake ${PROJECT_BINARY_DIR}/KilnConfigVersion.cmake
  DESTINATION ${KILN_CMAKE_DIR} COMPONENT dev)

# cpack -G DEB (make package): one package, kiln, of the runtime component: the four binaries in
# /usr/bin, the systemd units in /lib/systemd/system and /etc/kiln/kiln.env (deploy/CMakeLists.txt
# and cmake/KilnInstallUnits.cmake), with the maintainer scripts of deploy/debian.
# Its dependencies come from dpkg-shlibdeps on the binaries, so they name exactly the shared
# libraries they link (gRPC, RocksDB, libgit2, ...), at the versions this machine built against.
set(CPACK_PACKAGE_NAME kiln)
set(CPACK_PACKAGE_VENDOR "Kiln")
set(CPACK_PACKAGE_CONTACT "Kiln maintainers <kiln@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Kiln durable workflows and builds: orchestrator, worker, builder agent and CLI")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Install into a staging DESTDIR with CMAKE_INSTALL_PREFIX the real /usr: the units then name
# /usr/bin, and /lib/systemd/system and /etc/kiln, outside the prefix, land in the package too.
# (With DESTDIR, CPack installs with CPACK_INSTALL_PREFIX, not CPACK_PACKAGING_INSTALL_PREFIX.)
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_COMPONENTS_ALL runtime)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME kiln)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# conffiles: dpkg keeps an operator's /etc/kiln/kiln.env across upgrades and removes it on purge.
# postinst, prerm, postrm: what each does to systemd, and that purge keeps /var/lib's data, is
# written at the top of each.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
  ${PROJECT_SOURCE_DIR}/deploy/debian/prerm ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The builder agent runs image builds through podman (builder-agent/podman); git fetches are
# libgit2, linked.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "podman, runc")
# The build's debug info stays in the build tree: stripped, the four binaries are about a
# tenth of the size.
set(CPACK_STRIP_FILES ON)
# Where the .deb lands (cpack -B DIR overrides it).
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)
include(CPack)
