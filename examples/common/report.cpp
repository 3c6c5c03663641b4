#include "report.h"

#include <tapegrad/core/error.h>
#include <tapegrad/core/serialize.h>

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

namespace tapegrad::examples {

Progress::Progress(std::string label, int64_t total, bool enabled, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(std::max<int64_t>(total, 1)),
      enabled_(enabled),
      tty_(isatty(STDOUT_FILENO)) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void Progress::step(double loss, int64_t items) {
  ++done_;
  items_ += items;
  loss_sum_ += loss * static_cast<double>(items);
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  // A terminal gets a bar redrawn ~10 times a second; a log gets a line every ~10% of the epoch.
  const bool due = tty_ ? since > 0.1 : (done_ * 10 / total_ != (done_ - 1) * 10 / total_);
  if (due || done_ == total_) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::draw(bool final) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(items_) / elapsed : 0;
  const double eta = done_ > 0 ? elapsed * static_cast<double>(total_ - done_) / static_cast<double>(done_) : 0;
  const std::string stats = fmt::format("loss {:.4f}  {:.0f} {}/s  {}", running_loss(), rate, unit_,
                                        final ? fmt::format("{:.1f}s", elapsed) : fmt::format("ETA {:.0f}s", eta));
  if (tty_) {
    constexpr int width = 30;
    const int filled = static_cast<int>(width * done_ / total_);
    fmt::print("\r{} [{}{}] {}/{}  {}\033[K", label_, std::string(filled, '#'), std::string(width - filled, '.'), done_,
               total_, stats);
    if (final) fmt::print("\n");
  } else if (!final) {
    fmt::print("{} {}/{}  {}\n", label_, done_, total_, stats);
  }
  std::fflush(stdout);
}

double Progress::finish() {
  if (enabled_) draw(true);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void append_metrics(const std::string& path, const EpochMetrics& m, bool with_throughput) {
  std::ofstream f(path, std::ios::app);
  TG_CHECK(f.good(), "metrics: cannot open '{}' for appending", path);
  f << fmt::format("{{\"epoch\": {}, \"train_loss\": {:.6f}, \"test_loss\": {:.6f}, \"test_acc\": {:.6f}, \"seconds\": {:.3f}",
                   m.epoch, m.train_loss, m.test_loss, m.test_acc, m.seconds);
  if (with_throughput) f << fmt::format(", \"images_per_second\": {:.1f}", m.items_per_second);
  if (m.data_wait_seconds >= 0) f << fmt::format(", \"data_wait_seconds\": {:.3f}", m.data_wait_seconds);
  f << "}\n";
}

std::string format_confusion(const std::vector<std::vector<int64_t>>& m, const std::vector<std::string>& names) {
  size_t w = 5;
  for (const auto& n : names) w = std::max(w, n.size());
  std::string s = fmt::format("{:>{}}  (rows: true class, columns: predicted)\n", "", w);
  s += fmt::format("{:>{}}", "", w);
  for (size_t j = 0; j < names.size(); ++j) s += fmt::format(" {:>5}", j);
  s += "\n";
  for (size_t i = 0; i < m.size(); ++i) {
    s += fmt::format("{:>{}}", i < names.size() ? names[i] : std::to_string(i), w);
    for (int64_t v : m[i]) s += fmt::format(" {:>5}", v);
    s += fmt::format("   ({})\n", i);
  }
  return s;
}

std::string format_per_class_accuracy(const std::vector<std::vector<int64_t>>& m, const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < m.size(); ++i) {
    int64_t total = 0;
    for (int64_t v : m[i]) total += v;
    const double acc = total ? static_cast<double>(m[i][i]) / static_cast<double>(total) : 0.0;
    s += fmt::format("  {:<18} {:6.2f}%  ({} / {})\n", i < names.size() ? names[i] : std::to_string(i), 100 * acc,
                     m[i][i], total);
  }
  return s;
}

void write_curves_svg(const std::string& path, const std::vector<EpochMetrics>& h, const std::string& title) {
  // Two panels side by side: losses (train, test) and test accuracy, against the epoch.
  const double W = 900, H = 380, pw = 380, ph = 260, top = 60, left[2] = {70, 520};
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"Helvetica, Arial, "
      "sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n",
      W, H, W / 2, title);
  const double max_epoch = h.empty() ? 1 : static_cast<double>(h.back().epoch);
  double max_loss = 0;
  for (const auto& m : h) max_loss = std::max({max_loss, m.train_loss, m.test_loss});
  max_loss = max_loss > 0 ? max_loss * 1.1 : 1;
  auto px = [&](int panel, double epoch) {
    return left[panel] + (max_epoch > 1 ? (epoch - 1) / (max_epoch - 1) : 0.5) * pw;
  };
  auto py = [&](double v, double vmax) { return top + ph - v / vmax * ph; };
  const char* labels[2] = {"loss", "test accuracy"};
  for (int p = 0; p < 2; ++p) {
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", left[p],
                     top, pw, ph);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch</text>\n", left[p] + pw / 2, top + ph + 36);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left[p] + pw / 2, top - 8, labels[p]);
    const double vmax = p == 0 ? max_loss : 1.0;
    for (int k = 0; k <= 4; ++k) {
      const double v = vmax * k / 4, y = py(v, vmax);
      s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left[p], left[p] + pw, y, y);
      s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left[p] - 6, y + 4,
                       p == 0 ? fmt::format("{:.2f}", v) : fmt::format("{:.0f}%", 100 * v));
    }
    for (const auto& m : h)
      s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px(p, static_cast<double>(m.epoch)),
                       top + ph + 18, m.epoch);
  }
  auto polyline = [&](int panel, auto value, double vmax, const char* color, const char* name, int legend_row) {
    std::string pts;
    for (const auto& m : h) pts += fmt::format("{:.1f},{:.1f} ", px(panel, static_cast<double>(m.epoch)), py(value(m), vmax));
    s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", pts, color);
    for (const auto& m : h)
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px(panel, static_cast<double>(m.epoch)),
                       py(value(m), vmax), color);
    const double lx = left[panel] + pw - 110, ly = top + 16 + 16 * legend_row;
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/>\n", lx, lx + 18,
                     ly - 4, ly - 4, color);
    s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", lx + 24, ly, name);
  };
  polyline(0, [](const EpochMetrics& m) { return m.train_loss; }, max_loss, "#1f77b4", "train", 0);
  polyline(0, [](const EpochMetrics& m) { return m.test_loss; }, max_loss, "#ff7f0e", "test", 1);
  polyline(1, [](const EpochMetrics& m) { return m.test_acc; }, 1.0, "#2ca02c", "test", 0);
  s += "</svg>\n";
  write_file_atomic(path, s);
}

}  // namespace tapegrad::examples
