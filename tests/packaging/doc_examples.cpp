// doc_examples <doc.md> <out.cpp>: turns the C++ blocks of a Markdown document into one program, so the
// test suite compiles and runs every example of docs/api.md.
//
//   ```cpp        statements: the body of a function; main() runs them in document order
//   ```cpp file   declarations at namespace scope (a module, a helper) for the blocks after it
//
// Every block sees <tapegrad/tapegrad.h> and `using namespace tapegrad;`. Other fences (sh, cmake)
// are not code for this program.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: doc_examples <doc.md> <out.cpp>\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "doc_examples: cannot open " << argv[1] << "\n";
    return 1;
  }
  std::ostringstream file_scope, functions, calls;
  std::string line, heading;
  int line_no = 0, count = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.rfind("#", 0) == 0) heading = line;
    if (line.rfind("```cpp", 0) != 0) continue;
    const bool at_file_scope = line.find("file") != std::string::npos;
    const int start = line_no;
    std::ostringstream body;
    body << "#line " << line_no + 1 << " \"" << argv[1] << "\"\n";
    bool closed = false;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.rfind("```", 0) == 0) {
        closed = true;
        break;
      }
      body << line << "\n";
    }
    if (!closed) {
      std::cerr << "doc_examples: the block opened at line " << start << " is not closed\n";
      return 1;
    }
    if (at_file_scope) {
      file_scope << body.str();
      continue;
    }
    ++count;
    functions << "void example_" << count << "() {\n" << body.str() << "}\n";
    std::string title;
    for (char c : heading) title += (c == '"' || c == '\\') ? ' ' : c;
    calls << "  run(\"line " << start << ", " << title << "\", example_" << count << ");\n";
  }
  std::ofstream out(argv[2]);
  out << "// Generated from " << argv[1] << " by tests/packaging/doc_examples.cpp.\n"
      << "#include <tapegrad/tapegrad.h>\n\n"
      << "#include <cstdio>\n#include <exception>\n#include <iostream>\n#include <memory>\n#include <string>\n"
      << "#include <vector>\n\n"
      << "using namespace tapegrad;\n\n"
      << file_scope.str() << "\n"
      << functions.str() << "\n"
      << "#line 1 \"doc_examples main\"\n"
      << "static int failures = 0;\n"
      << "static void run(const char* where, void (*example)()) {\n"
      << "  std::printf(\"--- %s\\n\", where);\n"
      << "  try {\n    example();\n  } catch (const std::exception& e) {\n"
      << "    std::printf(\"FAILED: %s\\n\", e.what());\n    ++failures;\n  }\n}\n\n"
      << "int main() {\n"
      << calls.str() << "  std::printf(\"%d examples, %d failed\\n\", " << count
      << ", failures);\n  return failures == 0 && " << count << " > 0 ? 0 : 1;\n}\n";
  return out ? 0 : 1;
}
