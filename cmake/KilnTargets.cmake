# Kiln's target functions (kiln_library, kiln_binary, kiln_test) and the include check that makes
# each target's declared dependencies the only headers it may include.
#
# Every target records the headers it owns and the targets it depends on. Once the whole tree is
# configured, each target gets a check that runs before it compiles (a custom command it depends
# on, cmake -P check_includes.cmake): every `#include "..."` of its files that names a file of the
# source tree (or a generated kiln/*.pb.h) must be
#   - one of the target's own headers, or
#   - a header exported by one of its DEPS or PUBLIC_DEPS, where a library exports its own
#     headers and, transitively, what its PUBLIC_DEPS export (CMake's PUBLIC/PRIVATE, Abseil's
#     DEPS, Bazel's layering check).
# A library's headers may include only what its PUBLIC_DEPS export (its users see them); its
# sources may include what any of its deps exports. An include nobody declared fails the build,
# with the file, the header and the library that owns it. docs/architecture.md says why a check
# and not a staged include tree.
#
# A library owns the headers named in HEADERS plus, for each source foo.cc, foo.h beside it if
# there is one. Tests and binaries own their sources' sibling headers and their HEADERS the same
# way, and export nothing.

set(KILN_CHECK_INCLUDES_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_includes.cmake)
set(KILN_INCLUDE_CHECK_DIR ${CMAKE_BINARY_DIR}/include_check)

# _kiln_record(name [LIBRARY] SOURCES... HEADERS... DEPS... PUBLIC_DEPS...): what the check needs
# to know. Only a LIBRARY owns its headers (a test or binary exports nothing, and may share a
# source with another).
function(_kiln_record name)
  cmake_parse_arguments(ARG "LIBRARY" "" "SOURCES;HEADERS;DEPS;PUBLIC_DEPS" ${ARGN})
  set(sources)
  set(headers)
  foreach(src IN LISTS ARG_SOURCES)
    get_filename_component(abs ${src} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND sources ${abs})
    string(REGEX REPLACE "\\.cc$" ".h" sibling ${abs})
    if(NOT sibling STREQUAL abs AND EXISTS ${sibling})
      list(APPEND headers ${sibling})
    endif()
  endforeach()
  foreach(hdr IN LISTS ARG_HEADERS)
    get_filename_component(abs ${hdr} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    if(NOT EXISTS ${abs})
      message(FATAL_ERROR "${name}: HEADERS names ${hdr}, which does not exist")
    endif()
    list(APPEND headers ${abs})
  endforeach()
  list(REMOVE_DUPLICATES headers)
  set(relative)
  foreach(abs IN LISTS headers)
    file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${abs})
    list(APPEND relative ${rel})
    if(ARG_LIBRARY)
      get_property(owner GLOBAL PROPERTY KILN_OWNER_${rel})
      if(owner AND NOT owner STREQUAL name)
        message(FATAL_ERROR "${rel} is declared by both ${owner} and ${name}")
      endif()
      set_property(GLOBAL PROPERTY KILN_OWNER_${rel} ${name})
    endif()
  endforeach()
  set_property(GLOBAL PROPERTY KILN_LIBRARY_${name} ${ARG_LIBRARY})
  set_property(GLOBAL APPEND PROPERTY KILN_TARGETS ${name})
  set_property(GLOBAL PROPERTY KILN_SOURCES_${name} "${sources}")
  set_property(GLOBAL PROPERTY KILN_HEADER_FILES_${name} "${headers}")
  set_property(GLOBAL PROPERTY KILN_HEADERS_${name} "${relative}")
  set_property(GLOBAL PROPERTY KILN_DEPS_${name} "${ARG_DEPS}")
  set_property(GLOBAL PROPERTY KILN_PUBLIC_DEPS_${name} "${ARG_PUBLIC_DEPS}")
  set_property(GLOBAL PROPERTY KILN_ROOT_${name} "${PROJECT_SOURCE_DIR}")
  set_property(GLOBAL PROPERTY KILN_KNOWN_${name} TRUE)
endfunction()

# kiln_declare_includes(target [SOURCES ...] [HEADERS ...] [DEPS ...] [PUBLIC_DEPS ...]): puts a
# target made by hand (an OBJECT library, generated code) under the include check. kiln_proto
# declares HEADERS_PATTERN instead: the generated headers it exports.
function(kiln_declare_includes name)
  cmake_parse_arguments(ARG "" "HEADERS_PATTERN" "SOURCES;HEADERS;DEPS;PUBLIC_DEPS" ${ARGN})
  _kiln_record(${name} LIBRARY SOURCES ${ARG_SOURCES} HEADERS ${ARG_HEADERS} DEPS ${ARG_DEPS}
               PUBLIC_DEPS ${ARG_PUBLIC_DEPS})
  set_property(GLOBAL PROPERTY KILN_PATTERN_${name} "${ARG_HEADERS_PATTERN}")
endfunction()

# kiln_install_library(name): installs a library of ours (the archive, and its headers under
# include/ at their source-tree paths, so "sdk/client.h" resolves the same way installed) into
# the KilnTargets export set as Kiln::<name without kiln_>, the dev component. Whatever an
# installed library links that is ours must be installed too, or install(EXPORT) fails.
function(kiln_install_library name)
  string(REGEX REPLACE "^kiln_" "" export_name ${name})
  set_target_properties(${name} PROPERTIES EXPORT_NAME ${export_name})
  # Our headers use C++20 (coroutines): a consumer of the installed package needs it too.
  target_compile_features(${name} PUBLIC cxx_std_20)
  install(TARGETS ${name} EXPORT KilnTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  get_property(headers GLOBAL PROPERTY KILN_HEADERS_${name})
  foreach(rel IN LISTS headers)
    get_filename_component(dir ${rel} DIRECTORY)
    install(FILES ${PROJECT_SOURCE_DIR}/${rel} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${dir}
            COMPONENT dev)
  endforeach()
endfunction()

# kiln_library(name [INSTALL] [SOURCES ...] [HEADERS ...] [DEPS ...] [PUBLIC_DEPS ...]): one
# library, with our warnings. DEPS are private (its sources use them); PUBLIC_DEPS are the ones
# its headers include, which its users then see too. Without SOURCES it is header-only, and all
# its deps are its users' (declare them as PUBLIC_DEPS). INSTALL: part of the installed SDK
# (kiln_install_library).
function(kiln_library name)
  cmake_parse_arguments(ARG "INSTALL" "" "SOURCES;HEADERS;DEPS;PUBLIC_DEPS" ${ARGN})
  if(ARG_SOURCES)
    add_library(${name} STATIC ${ARG_SOURCES})
    target_include_directories(${name} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>)
    target_compile_options(${name} PRIVATE ${KILN_WARNINGS})
    target_link_libraries(${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_DEPS})
  else()
    if(ARG_DEPS)
      message(FATAL_ERROR "${name}: a header-only library's deps are PUBLIC_DEPS")
    endif()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>)
    target_link_libraries(${name} INTERFACE ${ARG_PUBLIC_DEPS})
  endif()
  _kiln_record(${name} LIBRARY SOURCES ${ARG_SOURCES} HEADERS ${ARG_HEADERS} DEPS ${ARG_DEPS}
               PUBLIC_DEPS ${ARG_PUBLIC_DEPS})
  if(ARG_INSTALL)
    kiln_install_library(${name})
  endif()
endfunction()

# kiln_binary(name [INSTALL] SOURCES ... [HEADERS ...] DEPS ...). INSTALL: one of the binaries
# `cmake --install` puts in bin/ (the runtime component, which the Debian package holds).
function(kiln_binary name)
  cmake_parse_arguments(ARG "INSTALL" "" "SOURCES;HEADERS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${KILN_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  if(ARG_INSTALL)
    install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
  endif()
  _kiln_record(${name} SOURCES ${ARG_SOURCES} HEADERS ${ARG_HEADERS} DEPS ${ARG_DEPS})
endfunction()

# kiln_test(name SOURCES ... [HEADERS ...] DEPS ... [LABELS ...] [COST seconds]): a Catch2
# binary whose cases CTest discovers. COST, about what its longest case takes: a parallel run
# with no timings of its own yet (a fresh clone, CI) starts the long cases first instead of
# leaving one running alone at the end.
function(kiln_test name)
  cmake_parse_arguments(ARG "" "COST" "SOURCES;HEADERS;DEPS;LABELS" ${ARGN})
  # Catch.cmake splits a case's name at a semicolon into two CTest tests that match no case
  # and pass without running anything: refuse such a name here.
  foreach(source ${ARG_SOURCES})
    file(STRINGS ${source} split_names REGEX "TEST_CASE\\(\"[^\"]*;")
    if(split_names)
      message(FATAL_ERROR "${source}: a TEST_CASE name holds a semicolon, which CTest's "
                          "discovery splits into tests that never run: ${split_names}")
    endif()
  endforeach()
  add_executable(${name} ${ARG_SOURCES})
  # A test's own code at -O1 in an optimised build (the code it tests keeps -O2): its many
  # large Catch2 functions compile a fifth faster, and the tests spend their time waiting on
  # the processes and the disks they drive, not in their own code.
  target_compile_options(${name} PRIVATE ${KILN_WARNINGS} $<$<CONFIG:RelWithDebInfo>:-O1>)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} Catch2::Catch2WithMain)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  set(cost)
  if(ARG_COST)
    set(cost COST ${ARG_COST})
  endif()
  catch_discover_tests(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT 300 ${cost})
  _kiln_record(${name} SOURCES ${ARG_SOURCES} HEADERS ${ARG_HEADERS} DEPS ${ARG_DEPS})
endfunction()

# Runs `target`'s test cases a second time with the orchestrators it starts, or its
# EngineHarness, on PostgreSQL (KILN_TEST_STORE=postgres-shared: tests/testutil/postgres.h), as
# "postgres: <name>" under the label `postgres` (in make test), each test on a database of its
# own in the one cluster the fixture kiln_postgres starts for the run (tests/CMakeLists.txt). A
# host without PostgreSQL reports them skipped (exit 77);
# KILN_REQUIRE_POSTGRES=1 makes that a failure. The extra `--order decl` (Catch's default) only
# gives this discovery its own file: Catch.cmake names it by the arguments, not the prefix.
function(kiln_test_on_postgres target)
  catch_discover_tests(${target}
    TEST_PREFIX "postgres: "
    EXTRA_ARGS --order decl
    TEST_LIST ${target}_POSTGRES_TESTS
    PROPERTIES LABELS postgres ENVIRONMENT KILN_TEST_STORE=postgres-shared
               FIXTURES_REQUIRED kiln_postgres SKIP_RETURN_CODE 77 TIMEOUT 300)
endfunction()

# Writes `content` to `path` only when it differs, so that a reconfigure reruns no check whose
# declarations did not change (file(CONFIGURE) would also expand ${…} and @…@ in it).
function(_kiln_write_if_changed path content)
  if(EXISTS ${path})
    file(READ ${path} old)
    if(old STREQUAL content)
      return()
    endif()
  endif()
  file(WRITE ${path} "${content}")
endfunction()

# What `target` exports to a target that depends on it: its headers and, transitively, what its
# PUBLIC_DEPS export. Targets not ours (absl::, gRPC::, …) export nothing we check.
function(_kiln_exported target out)
  get_property(known GLOBAL PROPERTY KILN_KNOWN_${target})
  if(NOT known)
    set(${out} "" PARENT_SCOPE)
    return()
  endif()
  get_property(done GLOBAL PROPERTY KILN_EXPORTED_DONE_${target})
  if(NOT done)
    get_property(visiting GLOBAL PROPERTY KILN_VISITING_${target})
    if(visiting)
      message(FATAL_ERROR "PUBLIC_DEPS form a cycle through ${target}")
    endif()
    set_property(GLOBAL PROPERTY KILN_VISITING_${target} TRUE)
    get_property(result GLOBAL PROPERTY KILN_HEADERS_${target})
    get_property(pattern GLOBAL PROPERTY KILN_PATTERN_${target})
    if(pattern)
      list(APPEND result "@${target}")
    endif()
    get_property(public_deps GLOBAL PROPERTY KILN_PUBLIC_DEPS_${target})
    foreach(dep IN LISTS public_deps)
      _kiln_exported(${dep} dep_exported)
      list(APPEND result ${dep_exported})
    endforeach()
    list(REMOVE_DUPLICATES result)
    set_property(GLOBAL PROPERTY KILN_EXPORTED_${target} "${result}")
    set_property(GLOBAL PROPERTY KILN_EXPORTED_DONE_${target} TRUE)
  endif()
  get_property(result GLOBAL PROPERTY KILN_EXPORTED_${target})
  set(${out} "${result}" PARENT_SCOPE)
endfunction()

# Runs once the whole tree is configured: writes each target's check and makes the target wait
# for it.
function(_kiln_add_include_checks)
  get_property(targets GLOBAL PROPERTY KILN_TARGETS)
  # Who owns each header, for the error message, and the generated-header patterns.
  set(owners "")
  set(patterns "")
  foreach(target IN LISTS targets)
    get_property(library GLOBAL PROPERTY KILN_LIBRARY_${target})
    if(NOT library)
      continue()
    endif()
    get_property(headers GLOBAL PROPERTY KILN_HEADERS_${target})
    foreach(rel IN LISTS headers)
      string(APPEND owners "${rel}=${target}\n")
    endforeach()
    get_property(pattern GLOBAL PROPERTY KILN_PATTERN_${target})
    if(pattern)
      string(APPEND patterns "set(KILN_PATTERN_${target} [==[${pattern}]==])\n")
    endif()
  endforeach()
  _kiln_write_if_changed(${KILN_INCLUDE_CHECK_DIR}/owners.txt "${owners}")
  set(checks "")
  foreach(target IN LISTS targets)
    get_property(sources GLOBAL PROPERTY KILN_SOURCES_${target})
    if(NOT sources)
      continue()  # generated code (kiln_proto) and header-only libraries: see below
    endif()
    get_property(own GLOBAL PROPERTY KILN_HEADERS_${target})
    get_property(header_files GLOBAL PROPERTY KILN_HEADER_FILES_${target})
    get_property(deps GLOBAL PROPERTY KILN_DEPS_${target})
    get_property(public_deps GLOBAL PROPERTY KILN_PUBLIC_DEPS_${target})
    get_property(root GLOBAL PROPERTY KILN_ROOT_${target})
    set(public_allowed ${own})
    foreach(dep IN LISTS public_deps)
      _kiln_exported(${dep} exported)
      list(APPEND public_allowed ${exported})
    endforeach()
    set(allowed ${public_allowed})
    foreach(dep IN LISTS deps)
      _kiln_exported(${dep} exported)
      list(APPEND allowed ${exported})
    endforeach()
    list(REMOVE_DUPLICATES allowed)
    list(REMOVE_DUPLICATES public_allowed)
    get_property(library GLOBAL PROPERTY KILN_LIBRARY_${target})
    if(NOT library)
      set(public_allowed ${allowed})  # a test's or binary's own headers are not exported
    endif()
    # The headers of the header-only libraries this target depends on are checked here too,
    # each against what its own library exports.
    set(extra_checks "")
    set(extra_files "")
    foreach(dep IN LISTS deps public_deps)
      _kiln_add_header_only_check(${dep} extra_checks extra_files)
    endforeach()
    _kiln_write_if_changed(${KILN_INCLUDE_CHECK_DIR}/${target}.cmake
"set(KILN_TARGET [==[${target}]==])
set(KILN_ROOT [==[${root}]==])
set(KILN_SOURCES [==[${sources}]==])
set(KILN_HEADER_FILES [==[${header_files}]==])
set(KILN_ALLOWED [==[${allowed}]==])
set(KILN_PUBLIC_ALLOWED [==[${public_allowed}]==])
${patterns}${extra_checks}")
    set(stamp ${KILN_INCLUDE_CHECK_DIR}/${target}.stamp)
    add_custom_command(OUTPUT ${stamp}
      COMMAND ${CMAKE_COMMAND} -DKILN_CHECK=${KILN_INCLUDE_CHECK_DIR}/${target}.cmake
              -DKILN_OWNERS=${KILN_INCLUDE_CHECK_DIR}/owners.txt -DKILN_STAMP=${stamp}
              -P ${KILN_CHECK_INCLUDES_SCRIPT}
      DEPENDS ${sources} ${header_files} ${KILN_INCLUDE_CHECK_DIR}/${target}.cmake
              ${KILN_CHECK_INCLUDES_SCRIPT} ${extra_files}
      COMMENT "Checking the includes of ${target}"
      VERBATIM)
    add_custom_target(${target}_includes DEPENDS ${stamp})
    add_dependencies(${target} ${target}_includes)
    list(APPEND checks ${target}_includes)
  endforeach()
  # Every check at once, without compiling: cmake --build <dir> --target kiln_include_checks
  add_custom_target(kiln_include_checks DEPENDS ${checks})
endfunction()

# A header-only library has nothing to compile, so whoever depends on it checks its headers
# (against what that library's PUBLIC_DEPS export).
function(_kiln_add_header_only_check dep out_var files_var)
  get_property(known GLOBAL PROPERTY KILN_KNOWN_${dep})
  get_property(sources GLOBAL PROPERTY KILN_SOURCES_${dep})
  get_property(pattern GLOBAL PROPERTY KILN_PATTERN_${dep})
  if(NOT known OR sources OR pattern)
    return()
  endif()
  get_property(header_files GLOBAL PROPERTY KILN_HEADER_FILES_${dep})
  _kiln_exported(${dep} exported)
  set(text "${${out_var}}list(APPEND KILN_HEADER_ONLY [==[${dep}]==])\n")
  string(APPEND text "set(\"KILN_HEADER_ONLY_FILES_${dep}\" [==[${header_files}]==])\n")
  string(APPEND text "set(\"KILN_HEADER_ONLY_ALLOWED_${dep}\" [==[${exported}]==])\n")
  set(${out_var} "${text}" PARENT_SCOPE)
  set(${files_var} ${${files_var}} ${header_files} PARENT_SCOPE)
endfunction()

cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _kiln_add_include_checks)
