// Sequential, ModuleList and ModuleDict.
#pragma once

#include "module.h"

#include <map>

namespace tapegrad::nn {

// Runs its children in order; children are named "0", "1", ... unless given names.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  template <typename... Ms>
  explicit Sequential(std::shared_ptr<Ms>... modules) : Module("Sequential") {
    (push_back(std::move(modules)), ...);
  }
  explicit Sequential(std::vector<std::pair<std::string, ModulePtr>> named);

  void push_back(ModulePtr module);
  void push_back(const std::string& name, ModulePtr module);
  size_t size() const { return children().size(); }
  ModulePtr operator[](size_t i) const;
  Tensor forward(const Tensor& x) override;
};

// Holds modules in a list; no forward of its own.
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  explicit ModuleList(std::vector<ModulePtr> modules);
  void push_back(ModulePtr module);
  size_t size() const { return children().size(); }
  ModulePtr operator[](size_t i) const;
};

// Holds modules by name, in insertion order; no forward of its own.
class ModuleDict : public Module {
 public:
  ModuleDict() : Module("ModuleDict") {}
  void insert(const std::string& name, ModulePtr module);
  bool contains(const std::string& name) const;
  ModulePtr operator[](const std::string& name) const;
  size_t size() const { return children().size(); }
};

}  // namespace tapegrad::nn
