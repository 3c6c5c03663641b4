// The word-language task: Python's random reproduced exactly, UTF-8 handling, and (when Debian's word
// lists are installed) the very split that ../shared/reference/torch_reference_tasks.py makes.
#include "support/fixtures.h"

#include <tapegrad/data/python_random.h>
#include <tapegrad/data/wordlists.h>

#include <filesystem>

using namespace tapegrad;
using namespace tapegrad::data;

TEST_CASE("PythonRandom reproduces CPython's random.Random") {
  // Values printed by CPython: random.Random(0).getrandbits(32) x3, then a shuffle of range(10).
  PythonRandom r(0);
  REQUIRE(r.next_u32() == 3626764237u);
  REQUIRE(r.next_u32() == 1654615998u);
  REQUIRE(r.next_u32() == 3255389356u);
  std::vector<int> x{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  r.shuffle(x);
  REQUIRE(x == std::vector<int>{8, 9, 1, 2, 5, 3, 7, 4, 0, 6});
  PythonRandom big(12345678901ull);  // a seed wider than 32 bits
  REQUIRE(big.next_u32() == 4063089813u);
  REQUIRE(big.next_u32() == 2562312935u);
}

TEST_CASE("UTF-8 decoding replaces invalid bytes like Python's errors='replace'") {
  REQUIRE(decode_utf8_replace("h\xe5llo") == U"h\uFFFDllo");              // Latin-1 byte
  REQUIRE(decode_utf8_replace("\xe2\x82") == U"\uFFFD");                  // truncated sequence: one U+FFFD
  REQUIRE(decode_utf8_replace("a\xe2\x82" "b") == U"a\uFFFDb");
  REQUIRE(decode_utf8_replace("\xed\xa0\x80") == U"\uFFFD\uFFFD\uFFFD");  // surrogates are invalid
  REQUIRE(decode_utf8_replace("\xc3\xa9t\xc3\xa9") == U"\u00e9t\u00e9");
  REQUIRE(encode_utf8(U"\u00e9\u20ac\U0001F600") == "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  REQUIRE(python_lower(U"ÉCOLE Łódź ŻÓŁW Ÿ") == U"école łódź żółw ÿ");
  REQUIRE(python_strip(U" \t\u00a0word\r\n") == U"word");
}

TEST_CASE("encode_words left-pads one-hot sequences so the last step is the last character") {
  std::map<char32_t, int64_t> vocab{{U'a', 1}, {U'b', 2}};
  Tensor x = encode_words({"ab", "bxa"}, vocab, 4, 5);
  REQUIRE(x.shape() == Shape{4, 2, 5});
  auto v = x.to_vector<float>();
  auto at = [&](int t, int n, int c) { return v[(t * 2 + n) * 5 + c]; };
  REQUIRE(at(0, 0, 0) + at(0, 0, 1) + at(1, 0, 1) == 0);  // padding steps are zero vectors
  REQUIRE(at(2, 0, 1) == 1);
  REQUIRE(at(3, 0, 2) == 1);
  REQUIRE(at(1, 1, 2) == 1);
  REQUIRE(at(2, 1, 4) == 1);  // 'x' is unknown: the last index
  REQUIRE(at(3, 1, 1) == 1);
  Tensor truncated = encode_words({"abababa"}, vocab, 3, 5);  // keeps the last 3 characters
  REQUIRE(truncated.to_vector<float>()[2 * 5 + 1] == 1);
}

TEST_CASE("the split matches the PyTorch reference script's") {
  if (!std::filesystem::exists("/usr/share/dict/polish")) {
    WARN("Debian's word lists are not installed (scripts/setup.sh --with-data); skipping");
    return;
  }
  const LanguageWords w = load_language_words();
  REQUIRE(w.train.size() == 40000);
  REQUIRE(w.test.size() == 10000);
  REQUIRE(w.chars.size() == 79);
  // Printed by the reference recipe: per language, shuffled[0], [3999], [4000], [4999].
  REQUIRE(w.train[0].word == "atwood");
  REQUIRE(w.train[3999].word == "gladioluses");
  REQUIRE(w.test[0].word == "protozoon");
  REQUIRE(w.test[999].word == "bamako");
  REQUIRE(w.train[2 * 4000].word == "calandreront");
  REQUIRE(w.test[2 * 1000 + 999].word == "regimberaient");
  REQUIRE(w.train[8 * 4000].word == "hush\xef\xbf\xbdllerska");  // swedish is partly Latin-1
  REQUIRE(w.test[9 * 1000 + 999].word == "nietropni\xc4\x99t\xc4\x85");
  REQUIRE(w.train[9 * 4000].label == 9);
  std::vector<std::string> train_words;
  for (const auto& lw : w.train) train_words.push_back(lw.word);
  Tensor x = encode_words(train_words, w.vocab);
  REQUIRE(x.sum().item() == 412467.0);
}
