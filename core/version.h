// The library's version: project(VERSION) in CMakeLists.txt, also the CMake package's version
// (find_package(tapegrad 0.1 CONFIG)) and tapegrad.pc's.
#pragma once

#include <string_view>

namespace tapegrad {

// "major.minor.patch" of the library the program runs with (for a shared library, the one loaded,
// which may be newer than the headers it was compiled against).
std::string_view version();

}  // namespace tapegrad
