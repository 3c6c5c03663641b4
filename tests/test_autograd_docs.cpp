// docs/autograd.md and docs/ops.md say only what is true:
//  - every fenced block of docs/autograd.md is either a real file (`<!-- file: docs/examples/x.cpp -->`,
//    byte-identical) or a program's output (`<!-- output: x -->`: exactly what doc_x prints;
//    `<!-- output-excerpt: x -->`: a run of whole lines of it);
//  - docs/images/cnn_step.dot is what doc_cnn_step writes, and its SVG rendering is committed;
//  - every "Code:" pointer of docs/ops.md names a file that exists and functions defined in it.
#include "support/fixtures.h"

#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace {

const std::filesystem::path kSource = TAPEGRAD_SOURCE_DIR;
const std::filesystem::path kBin = TAPEGRAD_DOC_EXAMPLES_DIR;

std::string read(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  INFO("reading " << p.string());
  REQUIRE(f.good());
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs a program and returns its standard output.
std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  INFO("running " << command);
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  REQUIRE(pclose(pipe) == 0);
  return out;
}

struct Block {
  std::string marker;  // "file", "output" or "output-excerpt"; "" when the block has none
  std::string target;  // the file or the program
  std::string body;    // the text between the fences, each line with its '\n'
  int line = 0;        // of the opening fence
};

// The fenced blocks of a markdown file, each with the marker comment on the line before its fence.
std::vector<Block> blocks(const std::string& md) {
  std::vector<Block> out;
  std::istringstream in(md);
  std::string line, previous;
  int number = 0;
  const std::regex marker(R"(<!-- (file|output|output-excerpt): (\S+) -->)");
  while (std::getline(in, line)) {
    ++number;
    if (line.rfind("```", 0) == 0) {
      Block b;
      b.line = number;
      std::smatch m;
      if (std::regex_match(previous, m, marker)) {
        b.marker = m[1];
        b.target = m[2];
      }
      while (std::getline(in, line) && line.rfind("```", 0) != 0) {
        ++number;
        b.body += line + "\n";
      }
      ++number;
      out.push_back(b);
      previous.clear();
      continue;
    }
    previous = line;
  }
  return out;
}

// Whether `source` defines a function `name` at namespace scope: "name(" on an unindented line, with a
// body ("{" before any ";").
bool defines(const std::string& source, const std::string& name) {
  for (size_t at = source.find(name + "("); at != std::string::npos; at = source.find(name + "(", at + 1)) {
    if (at > 0 && (std::isalnum(static_cast<unsigned char>(source[at - 1])) || source[at - 1] == '_')) continue;
    const size_t line_start = source.rfind('\n', at) + 1;  // npos + 1 == 0
    if (source[line_start] == ' ' || source[line_start] == '/') continue;
    const size_t body = source.find_first_of(";{", at);
    if (body != std::string::npos && source[body] == '{') return true;
  }
  return false;
}

std::string program(const std::string& name) { return (kBin / ("doc_" + name)).string(); }

}  // namespace

TEST_CASE("every code block of docs/autograd.md is a real file, byte for byte") {
  const auto bs = blocks(read(kSource / "docs/autograd.md"));
  int files = 0;
  for (const Block& b : bs) {
    INFO("docs/autograd.md:" << b.line << " " << b.marker << " " << b.target);
    REQUIRE_FALSE(b.marker.empty());
    if (b.marker != "file") continue;
    ++files;
    REQUIRE(b.body == read(kSource / b.target));
  }
  REQUIRE(files >= 5);
}

TEST_CASE("the outputs shown in docs/autograd.md are what the programs print") {
  const auto bs = blocks(read(kSource / "docs/autograd.md"));
  int outputs = 0;
  for (const Block& b : bs) {
    if (b.marker != "output" && b.marker != "output-excerpt") continue;
    INFO("docs/autograd.md:" << b.line << " " << b.marker << " " << b.target);
    ++outputs;
    const std::string printed = run(program(b.target));
    if (b.marker == "output")
      REQUIRE(b.body == printed);
    else
      REQUIRE(("\n" + printed).find("\n" + b.body) != std::string::npos);
  }
  REQUIRE(outputs >= 5);
}

TEST_CASE("docs/images/cnn_step.dot is the graph doc_cnn_step writes, rendered to SVG") {
  const auto dot = std::filesystem::temp_directory_path() / "tapegrad_doc_cnn_step.dot";
  run(program("cnn_step") + " " + dot.string() + " > /dev/null");
  REQUIRE(read(dot) == read(kSource / "docs/images/cnn_step.dot"));
  std::filesystem::remove(dot);
  const std::string svg = read(kSource / "docs/images/cnn_step.svg");
  REQUIRE(svg.find("<svg") != std::string::npos);
  // The rendering shows the same nodes: every op label of the DOT appears in the SVG.
  const std::string text = read(kSource / "docs/images/cnn_step.dot");
  const std::regex label(R"(label="#\d+ ([a-z_0-9]+)\\n)");
  int labels = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), label); it != std::sregex_iterator(); ++it) {
    ++labels;
    INFO((*it)[1]);
    REQUIRE(svg.find((*it)[1].str()) != std::string::npos);
  }
  REQUIRE(labels >= 6);  // the six ops of the step
}

TEST_CASE("every code pointer of docs/ops.md exists") {
  const std::string md = read(kSource / "docs/ops.md");
  std::istringstream in(md);
  std::string line;
  const std::regex tick("`([^`]+)`");
  int pointers = 0;
  while (std::getline(in, line)) {
    if (line.rfind("Code: ", 0) != 0) continue;
    std::vector<std::string> items;
    for (auto it = std::sregex_iterator(line.begin(), line.end(), tick); it != std::sregex_iterator(); ++it)
      items.push_back((*it)[1]);
    INFO(line);
    REQUIRE(items.size() >= 2);
    const std::string source = read(kSource / items[0]);
    for (size_t i = 1; i < items.size(); ++i) {
      INFO(items[0] << ": " << items[i]);
      REQUIRE(defines(source, items[i]));
      ++pointers;
    }
  }
  REQUIRE(pointers >= 15);
}
