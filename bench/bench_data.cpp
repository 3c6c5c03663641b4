// Data pipeline timings: Resize kernels, and DataLoader epochs (IDX images through the reference
// Fashion-MNIST preprocessing; PNG image folder decoding) with 0 and 2 workers.
// Prints "<name> <milliseconds>" lines; bench/run_data.sh puts them beside PyTorch's.
#include <tapegrad/data/dataloader.h>
#include <tapegrad/data/idx.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>

using namespace tapegrad;
using namespace tapegrad::data;

namespace {

double time_ms(int reps, const std::function<void()>& f) {
  f();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

IdxArray synthetic_images(int64_t n) {
  IdxArray a;
  a.shape = {n, 28, 28};
  Generator g(1);
  a.data.resize(static_cast<size_t>(n * 784));
  for (auto& v : a.data) v = static_cast<uint8_t>(g.below(256));
  return a;
}

}  // namespace

int main() {
  for (int64_t c : {1, 3}) {
    const Tensor x = Tensor::rand({64, c, 28, 28});
    const Resize r(32);
    std::printf("resize_64x%ldx28x28_to_32 %.4f\n", static_cast<long>(c), time_ms(50, [&] { (void)r(x); }));
  }

  // Fashion-MNIST test images (or random ones of the same shape) through the reference preprocessing.
  const std::string fm = "/usr/share/datasets/fashion-mnist/";
  IdxArray images, labels;
  if (std::filesystem::exists(fm + "t10k-images-idx3-ubyte.gz")) {
    images = read_idx(fm + "t10k-images-idx3-ubyte.gz");
    labels = read_idx(fm + "t10k-labels-idx1-ubyte.gz");
  } else {
    images = synthetic_images(10000);
    labels.shape = {10000};
    labels.data.assign(10000, 3);
  }
  auto ds = std::make_shared<IdxImageDataset>(images, labels, Compose({ToTensor(), Resize(32), Normalize({0.5}, {0.5})}));
  for (int64_t workers : {0, 2}) {
    DataLoader loader(ds, {.batch_size = 64, .shuffle = true, .num_workers = workers});
    std::printf("idx_epoch_10000_workers%ld %.4f\n", static_cast<long>(workers), time_ms(2, [&] {
                  for (Batch& b : loader) (void)b;
                }));
  }

  // PNG decoding: 2000 images exported to a temporary image folder.
  const std::string root = (std::filesystem::temp_directory_path() / "tapegrad-bench-data").string();
  std::filesystem::remove_all(root);
  IdxArray few = images, few_labels = labels;
  few.shape[0] = few_labels.shape[0] = 2000;
  few.data.resize(2000 * 784);
  few_labels.data.resize(2000);
  export_idx_image_folder(few, few_labels, root, fashion_mnist_classes());
  auto folder = std::make_shared<ImageFolder>(root, Compose({ToTensor(), Normalize({0.5}, {0.5})}),
                                              ImageFolderOptions{.channels = 1, .allow_empty = true});
  for (int64_t workers : {0, 2}) {
    DataLoader loader(folder, {.batch_size = 64, .shuffle = true, .num_workers = workers});
    std::printf("png_folder_epoch_2000_workers%ld %.4f\n", static_cast<long>(workers), time_ms(2, [&] {
                  for (Batch& b : loader) (void)b;
                }));
  }
  std::filesystem::remove_all(root);
  return 0;
}
