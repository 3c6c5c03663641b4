# Install rules: the public headers under include/tapegrad/ (folders kept, so their relative includes
# work), the library, the CMake package (find_package(tapegrad CONFIG) -> tapegrad::tapegrad) and
# tapegrad.pc. Included from the top-level CMakeLists.txt when TAPEGRAD_INSTALL is on.
include(CMakePackageConfigHelpers)

set(TAPEGRAD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tapegrad)

foreach(header ${TAPEGRAD_PUBLIC_HEADERS})
  get_filename_component(dir ${header} DIRECTORY)
  install(FILES ${PROJECT_SOURCE_DIR}/${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tapegrad/${dir})
endforeach()

install(TARGETS tapegrad EXPORT tapegradTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT tapegradTargets NAMESPACE tapegrad:: DESTINATION ${TAPEGRAD_CMAKE_DIR})

# What the package config needs to know about this build.
set(TAPEGRAD_PACKAGE_SHARED ${TAPEGRAD_SHARED})
if(MPI_CXX_FOUND)
  set(TAPEGRAD_PACKAGE_MPI ON)
else()
  set(TAPEGRAD_PACKAGE_MPI OFF)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tapegradConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/tapegradConfig.cmake INSTALL_DESTINATION ${TAPEGRAD_CMAKE_DIR})
# 0.x: only the same minor version is compatible (0.1.x with 0.1).
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tapegradConfigVersion.cmake VERSION ${PROJECT_VERSION}
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tapegradConfig.cmake ${PROJECT_BINARY_DIR}/tapegradConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/tapegradOpenBLAS.cmake
        DESTINATION ${TAPEGRAD_CMAKE_DIR})

# pkg-config: the prefix is found from the .pc file's own place, so the install can be moved.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(TAPEGRAD_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH rel /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
  string(REGEX REPLACE "/$" "" rel "${rel}")
  set(TAPEGRAD_PC_PREFIX "\${pcfiledir}/${rel}")
endif()
# Libs.private: what a static libtapegrad.a needs at the final link (pkg-config --static).
set(libs_private)
get_target_property(blas_libs tapegrad::openblas INTERFACE_LINK_LIBRARIES)
if(TARGET PkgConfig::TAPEGRAD_OPENBLAS_PC)
  list(APPEND libs_private ${TAPEGRAD_OPENBLAS_PC_LDFLAGS})
else()
  list(APPEND libs_private ${blas_libs})
endif()
list(APPEND libs_private ${ZLIB_LIBRARIES})
if(MPI_CXX_FOUND)
  list(APPEND libs_private ${MPI_CXX_LINK_FLAGS} ${MPI_CXX_LIBRARIES})
endif()
list(JOIN libs_private " " TAPEGRAD_PC_LIBS_PRIVATE)
set(TAPEGRAD_PC_OPENMP "${OpenMP_CXX_FLAGS}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/tapegrad.pc.in ${PROJECT_BINARY_DIR}/tapegrad.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tapegrad.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
