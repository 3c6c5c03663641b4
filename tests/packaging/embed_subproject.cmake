# cmake -DWORK_DIR=<kept between runs> -DSOURCE_DIR -DGENERATOR -DCXX_COMPILER -DC_COMPILER -DBUILD_TYPE
#       -DVERSION -DSHARED -DNATIVE -DWITH_MPI -P embed_subproject.cmake
#
# Builds and runs examples/embed in a project that brings tapegrad in with add_subdirectory, then
# with FetchContent from the local source tree. tapegrad must build as a subproject: not the top-level
# project, so its tests, examples and benchmarks are off by default.
cmake_minimum_required(VERSION 3.20)
include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)

foreach(from add_subdirectory FetchContent)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/packaging/subproject -B ${WORK_DIR} -G ${GENERATOR}
      -DEMBED_FROM=${from} -DTAPEGRAD_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
      -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_C_COMPILER=${C_COMPILER}
      -DTAPEGRAD_SHARED=${SHARED} -DTAPEGRAD_NATIVE=${NATIVE} -DTAPEGRAD_WITH_MPI=${WITH_MPI})
  foreach(dir tests examples bench)
    if(EXISTS ${WORK_DIR}/tapegrad/${dir})
      message(FATAL_ERROR "${from}: tapegrad configured its ${dir} as a subproject")
    endif()
  endforeach()
  run(${CMAKE_COMMAND} --build ${WORK_DIR} --target embed_mlp --parallel 2)
  run_embed(${WORK_DIR}/embed_mlp)
endforeach()
