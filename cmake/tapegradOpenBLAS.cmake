# Defines the imported target tapegrad::openblas (cblas.h and libopenblas), or sets
# tapegrad_OPENBLAS_FOUND to FALSE. Used by the build and by the installed package of a static
# libtapegrad, which leaves OpenBLAS to the program's final link.
#
# OpenBLAS built with OpenMP shares one thread pool with tapegrad's own kernels; the pthread build
# would keep a second pool that fights it for the cores. Prefer Debian's OpenMP variant.
set(tapegrad_OPENBLAS_FOUND TRUE)
if(NOT TARGET tapegrad::openblas)
  find_path(TAPEGRAD_CBLAS_INCLUDE cblas.h
    PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
  find_library(TAPEGRAD_OPENBLAS openblas
    PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
  if(TAPEGRAD_CBLAS_INCLUDE AND TAPEGRAD_OPENBLAS)
    add_library(tapegrad::openblas INTERFACE IMPORTED)
    set_target_properties(tapegrad::openblas PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${TAPEGRAD_CBLAS_INCLUDE}"
      INTERFACE_LINK_LIBRARIES "${TAPEGRAD_OPENBLAS}")
  else()
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(TAPEGRAD_OPENBLAS_PC QUIET IMPORTED_TARGET openblas)
    endif()
    if(TARGET PkgConfig::TAPEGRAD_OPENBLAS_PC)
      add_library(tapegrad::openblas INTERFACE IMPORTED)
      set_target_properties(tapegrad::openblas PROPERTIES
        INTERFACE_LINK_LIBRARIES PkgConfig::TAPEGRAD_OPENBLAS_PC)
    else()
      set(tapegrad_OPENBLAS_FOUND FALSE)
    endif()
  endif()
endif()
