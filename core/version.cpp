#include "version.h"

// The build passes project(VERSION) in.
#ifndef TAPEGRAD_VERSION_STRING
#error "TAPEGRAD_VERSION_STRING must be defined by the build (CMakeLists.txt)"
#endif

namespace tapegrad {

std::string_view version() { return TAPEGRAD_VERSION_STRING; }

}  // namespace tapegrad
