#include "wordlists.h"

#include "../core/serialize.h"
#include "python_random.h"

#include <algorithm>

namespace tapegrad::data {

const std::vector<std::string>& default_languages() {
  static const std::vector<std::string> langs{"american-english", "ngerman",    "french", "italian", "spanish",
                                              "portuguese",       "dutch",      "danish", "swedish", "polish"};
  return langs;
}

std::u32string decode_utf8_replace(const std::string& s) {
  // Each maximal invalid subsequence becomes one U+FFFD (what CPython's decoder does).
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < n) {
    const unsigned char b = byte(i);
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    char32_t cp;
    if (b >= 0xC2 && b <= 0xDF) need = 1, cp = b & 0x1F;
    else if (b == 0xE0) need = 2, cp = b & 0x0F, lo = 0xA0;
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2, cp = b & 0x0F;
    else if (b == 0xED) need = 2, cp = b & 0x0F, hi = 0x9F;
    else if (b == 0xF0) need = 3, cp = b & 0x07, lo = 0x90;
    else if (b >= 0xF1 && b <= 0xF3) need = 3, cp = b & 0x07;
    else if (b == 0xF4) need = 3, cp = b & 0x07, hi = 0x8F;
    else {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    size_t k = i + 1;
    bool ok = true;
    for (int c = 0; c < need; ++c, ++k) {
      const unsigned char lim_lo = c == 0 ? lo : 0x80, lim_hi = c == 0 ? hi : 0xBF;
      if (k >= n || byte(k) < lim_lo || byte(k) > lim_hi) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (byte(k) & 0x3F);
    }
    out.push_back(ok ? cp : char32_t{0xFFFD});
    i = k;
  }
  return out;
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  for (char32_t c : text) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::u32string python_lower(const std::u32string& text) {
  // Latin scripts (all the word lists use): ASCII, Latin-1 and Latin Extended-A.
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c >= U'A' && c <= U'Z') out.push_back(c + 32);
    else if (c >= 0xC0 && c <= 0xDE && c != 0xD7) out.push_back(c + 32);
    else if (c == 0x130) out += U"i\u0307";  // İ lowercases to two code points
    else if (c == 0x178) out.push_back(0xFF);
    else if (((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) && c % 2 == 0)
      out.push_back(c + 1);
    else if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && c % 2 == 1) out.push_back(c + 1);
    else out.push_back(c);
  }
  return out;
}

std::u32string python_strip(const std::u32string& text) {
  auto space = [](char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
  };
  size_t b = 0, e = text.size();
  while (b < e && space(text[b])) ++b;
  while (e > b && space(text[e - 1])) --e;
  return text.substr(b, e - b);
}

namespace {
// The lines of a file with Python's universal newlines (\n, \r\n and a lone \r end a line).
std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' || s[i] == '\r') {
      lines.push_back(s.substr(start, i - start));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  return lines;
}
}  // namespace

LanguageWords load_language_words(const std::string& dict_dir, const std::vector<std::string>& languages,
                                  int64_t per_lang_train, int64_t per_lang_test, uint64_t seed) {
  TG_CHECK(per_lang_train > 0 && per_lang_test >= 0, "load_language_words: expected positive split sizes, got {} and {}",
           per_lang_train, per_lang_test);
  LanguageWords out;
  out.languages = languages;
  PythonRandom rng(seed);
  for (size_t li = 0; li < languages.size(); ++li) {
    const std::string path = dict_dir + "/" + languages[li];
    std::string bytes;
    try {
      bytes = read_file(path);
    } catch (const Error&) {
      fail("load_language_words: cannot read the word list '{}' (install the Debian package that ships it, e.g. "
           "scripts/setup.sh --with-data)",
           path);
    }
    std::vector<std::string> words;
    for (const std::string& line : split_lines(bytes)) {
      const std::u32string w = python_strip(decode_utf8_replace(line));
      if (w.empty() || w.find(U'\'') != std::u32string::npos) continue;
      words.push_back(encode_utf8(python_lower(w)));
    }
    // UTF-8 byte order is code point order, so this is Python's sorted(set(...)).
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    rng.shuffle(words);
    TG_CHECK(static_cast<int64_t>(words.size()) >= per_lang_train + per_lang_test,
             "load_language_words: '{}' has {} usable words, fewer than the {} requested", path, words.size(),
             per_lang_train + per_lang_test);
    for (int64_t i = 0; i < per_lang_train; ++i) out.train.push_back({words[i], static_cast<int64_t>(li)});
    for (int64_t i = per_lang_train; i < per_lang_train + per_lang_test; ++i)
      out.test.push_back({words[i], static_cast<int64_t>(li)});
  }
  std::vector<char32_t> chars;
  for (const auto& w : out.train)
    for (char32_t c : decode_utf8_replace(w.word)) chars.push_back(c);
  std::sort(chars.begin(), chars.end());
  chars.erase(std::unique(chars.begin(), chars.end()), chars.end());
  out.chars = chars;
  for (size_t i = 0; i < chars.size() && i < 98; ++i) out.vocab[chars[i]] = static_cast<int64_t>(i) + 1;
  return out;
}

Tensor encode_words(const std::vector<std::string>& words, const std::map<char32_t, int64_t>& vocab, int64_t max_len,
                    int64_t input_size) {
  TG_CHECK(max_len > 0 && input_size > 1, "encode_words: expected positive max_len and input_size > 1");
  const auto n = static_cast<int64_t>(words.size());
  Tensor x = Tensor::zeros({max_len, n, input_size});
  float* p = x.data_ptr<float>();
  const int64_t unknown = input_size - 1;
  for (int64_t j = 0; j < n; ++j) {
    std::u32string w = decode_utf8_replace(words[j]);
    if (static_cast<int64_t>(w.size()) > max_len) w = w.substr(w.size() - max_len);
    const int64_t start = max_len - static_cast<int64_t>(w.size());
    for (size_t t = 0; t < w.size(); ++t) {
      auto it = vocab.find(w[t]);
      const int64_t idx = it == vocab.end() ? unknown : std::min(it->second, unknown);
      p[((start + static_cast<int64_t>(t)) * n + j) * input_size + idx] = 1.0f;
    }
  }
  return x;
}

}  // namespace tapegrad::data
