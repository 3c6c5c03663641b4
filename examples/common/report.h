// What the training programs show a person: a progress bar (plain lines when not on a terminal),
// per-epoch metrics as JSON lines, a confusion matrix with class names, and the learning curves as SVG.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace tapegrad::examples {

class Progress {
 public:
  // total: number of steps (batches); `unit` names the items of the items/s figure ("images").
  Progress(std::string label, int64_t total, bool enabled = true, std::string unit = "items");
  // Called after each step with that step's loss and item count.
  void step(double loss, int64_t items);
  // Ends the line; returns the elapsed seconds.
  double finish();
  double running_loss() const { return items_ ? loss_sum_ / static_cast<double>(items_) : 0.0; }

 private:
  void draw(bool final);
  std::string label_, unit_;
  int64_t total_, done_ = 0, items_ = 0;
  double loss_sum_ = 0;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

struct EpochMetrics {
  int64_t epoch = 0;
  double train_loss = 0, test_loss = 0, test_acc = 0, seconds = 0, items_per_second = 0;
  // Of `seconds`, the time the training loop waited for the next batch (negative: not measured).
  double data_wait_seconds = -1;
};

// Appends one JSON object per line: epoch, train_loss, test_loss, test_acc, seconds, then
// images_per_second (with_throughput) and data_wait_seconds (when measured).
void append_metrics(const std::string& path, const EpochMetrics& m, bool with_throughput = true);

// Rows: true class, columns: predicted class.
std::string format_confusion(const std::vector<std::vector<int64_t>>& matrix, const std::vector<std::string>& names);
// Accuracy per class, one line each.
std::string format_per_class_accuracy(const std::vector<std::vector<int64_t>>& matrix,
                                      const std::vector<std::string>& names);

// Loss (train and test) and test accuracy against the epoch, as a standalone SVG file.
void write_curves_svg(const std::string& path, const std::vector<EpochMetrics>& history, const std::string& title);

}  // namespace tapegrad::examples
