#include "container.h"

namespace tapegrad::nn {

Sequential::Sequential(std::vector<std::pair<std::string, ModulePtr>> named) : Module("Sequential") {
  for (auto& [name, m] : named) push_back(name, std::move(m));
}

void Sequential::push_back(ModulePtr module) { push_back(std::to_string(size()), std::move(module)); }
void Sequential::push_back(const std::string& name, ModulePtr module) { register_module_slot(name, std::move(module)); }

ModulePtr Sequential::operator[](size_t i) const {
  auto c = children();
  TG_CHECK(i < c.size(), "Sequential: index {} is out of range", i);
  return c[i];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const ModulePtr& m : children()) y = (*m)(y);
  return y;
}

ModuleList::ModuleList(std::vector<ModulePtr> modules) : Module("ModuleList") {
  for (auto& m : modules) push_back(std::move(m));
}

void ModuleList::push_back(ModulePtr module) { register_module_slot(std::to_string(size()), std::move(module)); }

ModulePtr ModuleList::operator[](size_t i) const {
  auto c = children();
  TG_CHECK(i < c.size(), "ModuleList: index {} is out of range", i);
  return c[i];
}

void ModuleDict::insert(const std::string& name, ModulePtr module) { register_module_slot(name, std::move(module)); }

bool ModuleDict::contains(const std::string& name) const {
  for (const auto& [n, m] : named_children())
    if (n == name) return true;
  return false;
}

ModulePtr ModuleDict::operator[](const std::string& name) const {
  for (const auto& [n, m] : named_children())
    if (n == name) return m;
  fail("ModuleDict: no module named '{}'", name);
}

}  // namespace tapegrad::nn
