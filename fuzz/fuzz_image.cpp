// tapegrad::data::decode_image (PNG, JPEG, BMP, GIF, TGA, PNM through stb_image) on arbitrary bytes,
// and what is built on a decoded image: the header probe, channel conversion, ToTensor and a PNG round
// trip.
#include "fuzz_common.h"

#include <tapegrad/data/image.h>
#include <tapegrad/data/transforms.h>

using namespace tapegrad;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = fuzz::bytes_of(data, size);
  data::ImageInfo info;
  try {
    info = data::probe_image(bytes, "fuzz input");
  } catch (const Error&) {
    // The probe refuses what the decoder would refuse first.
    FUZZ_CHECK(!data::image_problem(bytes).empty());
    return 0;
  }
  FUZZ_CHECK(info.height > 0 && info.width > 0 && info.channels >= 1 && info.channels <= 4);
  data::Image img;
  try {
    img = data::decode_image(bytes, "fuzz input");
  } catch (const Error&) {
    FUZZ_CHECK(!data::image_problem(bytes, true).empty());
    return 0;
  }
  FUZZ_CHECK(data::image_problem(bytes, true).empty());
  FUZZ_CHECK(img.height > 0 && img.width > 0 && img.channels >= 1 && img.channels <= 4);
  FUZZ_CHECK(img.pixels.size() == static_cast<size_t>(img.height * img.width * img.channels));
  if (img.height * img.width > 4096) return 0;  // the rest is per pixel: keep runs fast
  for (int64_t c : {1, 3, 4}) {
    const data::Image converted = data::convert_channels(img, c);
    FUZZ_CHECK(converted.height == img.height && converted.width == img.width && converted.channels == c);
  }
  fuzz::touch(data::ToTensor{}(img));
  // PNG is lossless: decoding the encoding gives the same image back.
  const data::Image again = data::decode_image(data::encode_png(img), "round trip");
  FUZZ_CHECK(again == img);
  return 0;
}
