# cmake -DSOURCE_DIR=<tapegrad> -DPUBLIC_HEADERS=<file with one header path per line> -P check_headers.cmake
#
# Checks, by following the quoted #includes from the source tree:
#   - every public header is reachable from tapegrad.h (a new header, or a new area, must be added
#     there, or to TAPEGRAD_INTERNAL_HEADERS in CMakeLists.txt if only .cpp files include it);
#   - a public header includes only public headers (quoted) and no private dependency (<...>).
cmake_minimum_required(VERSION 3.20)
file(STRINGS ${PUBLIC_HEADERS} public)
set(problems)

# Quoted includes of `header`, as paths relative to SOURCE_DIR.
function(quoted_includes header out)
  file(STRINGS ${SOURCE_DIR}/${header} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  get_filename_component(dir ${header} DIRECTORY)
  set(result)
  foreach(line ${lines})
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" inc "${line}")
    if(dir)
      set(path "${dir}/${inc}")
    else()
      set(path "${inc}")
    endif()
    cmake_path(NORMAL_PATH path)
    list(APPEND result ${path})
  endforeach()
  set(${out} ${result} PARENT_SCOPE)
endfunction()

foreach(header ${public})
  quoted_includes(${header} incs)
  foreach(inc ${incs})
    if(NOT inc IN_LIST public)
      list(APPEND problems "${header} includes \"${inc}\", which is not a public header")
    endif()
  endforeach()
  file(STRINGS ${SOURCE_DIR}/${header} private REGEX
       "^[ \t]*#[ \t]*include[ \t]*[<\"][^>\"]*(cblas|openblas|lapack|mpi|zlib|zconf|nlohmann|stb_|stb/)")
  foreach(line ${private})
    list(APPEND problems "${header} includes a private dependency: ${line}")
  endforeach()
endforeach()

# Everything tapegrad.h reaches.
set(reached)
set(todo tapegrad.h)
while(todo)
  list(POP_FRONT todo header)
  if(header IN_LIST reached OR NOT EXISTS ${SOURCE_DIR}/${header})
    continue()
  endif()
  list(APPEND reached ${header})
  quoted_includes(${header} incs)
  list(APPEND todo ${incs})
endwhile()
foreach(header ${public})
  if(NOT header IN_LIST reached)
    list(APPEND problems "${header} is public but not reachable from tapegrad.h (include it there, or list it in "
                         "TAPEGRAD_INTERNAL_HEADERS in CMakeLists.txt if it is internal)")
  endif()
endforeach()

list(LENGTH public n_public)
list(LENGTH reached n_reached)
if(problems)
  list(JOIN problems "\n  " text)
  message(FATAL_ERROR "public headers:\n  ${text}")
endif()
message(STATUS "${n_public} public headers, all reachable from tapegrad.h; no private include")
