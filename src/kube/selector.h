#pragma once
// kube::LabelSelector: the label selector syntax of the Kubernetes API (the labelSelector query
// parameter), parsed once and matched against objects in memory. The cache uses it to drop an
// observed object the server would no longer send; the fake client uses it to filter.
//
// A selector is a comma-separated list of requirements, all of which must hold:
//   k          the label k is set          !k          the label k is not set
//   k=v, k==v  k is set to v                k!=v        k is not set to v (or not set at all)
//   k in (a,b)                              k notin (a,b)  (notin also holds when k is not set)
// The empty selector matches everything. Values may be empty ("k=" matches k set to "").

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "value/value.h"

namespace gantry::kube {

class LabelSelector {
 public:
  LabelSelector() = default;  // matches everything

  // InvalidArgument naming the selector and what is wrong at which position.
  static Result<LabelSelector> Parse(std::string_view text);

  // Whether `labels` (a map of strings, or null) satisfies every requirement.
  bool Matches(const value::Value* labels) const;
  // Whether the object's metadata.labels satisfy it.
  bool MatchesObject(const value::Value& object) const;

  bool empty() const { return requirements_.empty(); }

 private:
  enum class Op { kExists, kNotExists, kIn, kNotIn };
  struct Requirement {
    std::string key;
    Op op;
    std::vector<std::string> values;
  };
  std::vector<Requirement> requirements_;
};

}  // namespace gantry::kube
