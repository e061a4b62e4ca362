# cmake -DKILN_SOURCE_DIR=<repo> -DWORK_DIR=<dir> -DMODE=<mode> -DGENERATOR=<gen>
#       -DCXX=<compiler> [-DEXPECT_ERROR=<text>] -P run_probe.cmake
#
# Configures and builds probe/ in MODE. Without EXPECT_ERROR the build must succeed; with it,
# the build must fail and its output must contain EXPECT_ERROR (the include check's message).
set(build_dir ${WORK_DIR}/${MODE})
file(REMOVE_RECURSE ${build_dir})
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR}/probe -B ${build_dir} -G ${GENERATOR}
          -DCMAKE_CXX_COMPILER=${CXX} -DKILN_SOURCE_DIR=${KILN_SOURCE_DIR} -DPROBE_MODE=${MODE}
  RESULT_VARIABLE configured OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT configured EQUAL 0)
  message(FATAL_ERROR "the probe did not configure:\n${out}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${build_dir}
  RESULT_VARIABLE built OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT DEFINED EXPECT_ERROR)
  if(NOT built EQUAL 0)
    message(FATAL_ERROR "the probe (${MODE}) should build:\n${out}")
  endif()
else()
  if(built EQUAL 0)
    message(FATAL_ERROR "the probe (${MODE}) built, but its include check should fail it:\n${out}")
  endif()
  string(FIND "${out}" "${EXPECT_ERROR}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the probe (${MODE}) failed without \"${EXPECT_ERROR}\":\n${out}")
  endif()
endif()
file(REMOVE_RECURSE ${build_dir})
message(STATUS "probe ${MODE}: as expected")
