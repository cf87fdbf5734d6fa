#include "kube/selector.h"

#include <algorithm>

namespace gantry::kube {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

// A label key or value: everything up to an operator, a separator or a space.
bool IsNameChar(char c) {
  return !IsSpace(c) && c != ',' && c != '=' && c != '!' && c != '(' && c != ')';
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  void SkipSpace() {
    while (pos_ < text_.size() && IsSpace(text_[pos_])) ++pos_;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ >= text_.size();
  }
  bool Consume(std::string_view token) {
    SkipSpace();
    if (text_.substr(pos_).starts_with(token)) {
      pos_ += token.size();
      return true;
    }
    return false;
  }
  // A word followed by a space or '(' (for "in" and "notin", which are also valid label values).
  bool ConsumeWord(std::string_view word) {
    SkipSpace();
    if (!text_.substr(pos_).starts_with(word)) return false;
    size_t after = pos_ + word.size();
    if (after < text_.size() && !IsSpace(text_[after]) && text_[after] != '(') return false;
    pos_ = after;
    return true;
  }
  std::string Name() {
    SkipSpace();
    size_t start = pos_;
    while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }
  Status Error(std::string_view what) const {
    return InvalidArgumentError("label selector {:?}: {} at position {}", text_, what, pos_ + 1);
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

Result<LabelSelector> LabelSelector::Parse(std::string_view text) {
  LabelSelector out;
  Parser p(text);
  if (p.AtEnd()) return out;
  while (true) {
    Requirement req;
    if (p.Consume("!")) {
      req.key = p.Name();
      if (req.key.empty()) return p.Error("expected a label key after '!'");
      req.op = Op::kNotExists;
    } else {
      req.key = p.Name();
      if (req.key.empty()) return p.Error("expected a label key");
      if (p.Consume("!=")) {
        req.op = Op::kNotIn;
        req.values.push_back(p.Name());
      } else if (p.Consume("==") || p.Consume("=")) {
        req.op = Op::kIn;
        req.values.push_back(p.Name());
      } else if (bool in = p.ConsumeWord("in"); in || p.ConsumeWord("notin")) {
        req.op = in ? Op::kIn : Op::kNotIn;
        if (!p.Consume("(")) return p.Error("expected '(' after in/notin");
        while (true) {
          req.values.push_back(p.Name());
          if (p.Consume(")")) break;
          if (!p.Consume(",")) return p.Error("expected ',' or ')' in a value set");
        }
      } else {
        req.op = Op::kExists;
      }
    }
    out.requirements_.push_back(std::move(req));
    if (p.AtEnd()) break;
    if (!p.Consume(",")) return p.Error("expected ',' between requirements");
  }
  return out;
}

bool LabelSelector::Matches(const value::Value* labels) const {
  for (const Requirement& r : requirements_) {
    const value::Value* v = labels ? labels->Get(r.key) : nullptr;
    bool present = v != nullptr && v->IsString();
    switch (r.op) {
      case Op::kExists:
        if (!present) return false;
        break;
      case Op::kNotExists:
        if (present) return false;
        break;
      case Op::kIn:
        if (!present || std::find(r.values.begin(), r.values.end(), v->AsString()) == r.values.end()) {
          return false;
        }
        break;
      case Op::kNotIn:
        if (present && std::find(r.values.begin(), r.values.end(), v->AsString()) != r.values.end()) {
          return false;
        }
        break;
    }
  }
  return true;
}

bool LabelSelector::MatchesObject(const value::Value& object) const {
  return Matches(object.Find({"metadata", "labels"}));
}

}  // namespace gantry::kube
