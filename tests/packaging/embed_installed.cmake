# cmake -DBUILD_DIR=<tapegrad build> -DWORK_DIR=<scratch> -DSOURCE_DIR -DGENERATOR -DCXX_COMPILER
#       -DC_COMPILER -DBUILD_TYPE -DVERSION -DSHARED -DLIBDIR -DINCLUDEDIR -P embed_installed.cmake
#
# Installs the already built tapegrad into a fresh prefix and builds examples/embed against it the
# two ways another project would: find_package(tapegrad CONFIG) and pkg-config. Runs both programs.
cmake_minimum_required(VERSION 3.20)
include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# The layout: public headers in their folders, internal ones absent, the package and the .pc file.
set(installed ${INCLUDEDIR}/tapegrad/tapegrad.h
              ${INCLUDEDIR}/tapegrad/core/tensor.h
              ${INCLUDEDIR}/tapegrad/core/ops/linalg.h
              ${INCLUDEDIR}/tapegrad/layers/linear.h
              ${INCLUDEDIR}/tapegrad/data/dataloader.h
              ${INCLUDEDIR}/tapegrad/dist/ddp.h
              ${LIBDIR}/cmake/tapegrad/tapegradConfig.cmake
              ${LIBDIR}/cmake/tapegrad/tapegradConfigVersion.cmake
              ${LIBDIR}/pkgconfig/tapegrad.pc)
foreach(f ${installed})
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
set(internal ${INCLUDEDIR}/tapegrad/core/iter.h
             ${INCLUDEDIR}/tapegrad/core/reduce_iter.h
             ${INCLUDEDIR}/tapegrad/data/pixel.h
             ${INCLUDEDIR}/tapegrad/third_party)
foreach(f ${internal})
  if(EXISTS ${prefix}/${f})
    message(FATAL_ERROR "installed, but internal: ${f}")
  endif()
endforeach()

# find_package(tapegrad CONFIG REQUIRED), exactly as examples/embed/CMakeLists.txt says.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/embed -B ${WORK_DIR}/cmake-build -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_C_COMPILER=${C_COMPILER})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
run_embed(${WORK_DIR}/cmake-build/embed_mlp)

# pkg-config, compiling by hand.
find_program(PKG_CONFIG pkg-config)
if(NOT PKG_CONFIG)
  message(STATUS "pkg-config not found: tapegrad.pc not checked")
  return()
endif()
set(ENV{PKG_CONFIG_PATH} ${prefix}/${LIBDIR}/pkgconfig)
if(SHARED)
  set(static_flag)
else()
  set(static_flag --static)
endif()
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs ${static_flag} tapegrad
                OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs ${static_flag} tapegrad failed")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
# -ltapegrad goes after the source; the program finds a shared library through its rpath.
run(${CXX_COMPILER} -std=c++20 -O1 ${SOURCE_DIR}/examples/embed/main.cpp ${flags} -Wl,-rpath,${prefix}/${LIBDIR}
    -o ${WORK_DIR}/embed_mlp_pc)
run_embed(${WORK_DIR}/embed_mlp_pc)
