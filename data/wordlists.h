// "Which language is this word?": a 10-class text task built from Debian's word lists
// (/usr/share/dict/: wamerican, wngerman, wfrench, ...), the data of the documents' RNN example.
//
// Exactly the recipe of ../shared/reference/torch_reference_tasks.py, so both train on the very same
// split: read each list as UTF-8 (invalid bytes become U+FFFD, as Python's errors="replace"), strip,
// drop empty words and words with an apostrophe, lowercase, deduplicate, sort by code point, shuffle
// with Python's random.Random(seed) (shared across languages, in order), and take the first
// per_lang_train words for training and the next per_lang_test for testing.
#pragma once

#include "../core/tensor.h"

#include <map>
#include <string>
#include <vector>

namespace tapegrad::data {

// The documents' ten languages, as file names under /usr/share/dict.
const std::vector<std::string>& default_languages();

struct LabeledWord {
  std::string word;  // UTF-8, lowercased
  int64_t label;
};

struct LanguageWords {
  std::vector<std::string> languages;
  std::vector<LabeledWord> train, test;
  // Distinct characters of the training words, sorted; the first 98 get indices 1..98 and every
  // other character index 99 (index 0 is never set: a padded step is an all-zero vector).
  std::vector<char32_t> chars;
  std::map<char32_t, int64_t> vocab;
};

LanguageWords load_language_words(const std::string& dict_dir = "/usr/share/dict",
                                  const std::vector<std::string>& languages = default_languages(),
                                  int64_t per_lang_train = 4000, int64_t per_lang_test = 1000, uint64_t seed = 0);

// One-hot sequences (max_len, N, input_size), float32: the last max_len characters of each word,
// left-padded with zero vectors so that the last step is the word's last character.
Tensor encode_words(const std::vector<std::string>& words, const std::map<char32_t, int64_t>& vocab,
                    int64_t max_len = 20, int64_t input_size = 100);

// UTF-8 helpers with Python's semantics.
std::u32string decode_utf8_replace(const std::string& bytes);
std::string encode_utf8(const std::u32string& text);
std::u32string python_lower(const std::u32string& text);
std::u32string python_strip(const std::u32string& text);

}  // namespace tapegrad::data
