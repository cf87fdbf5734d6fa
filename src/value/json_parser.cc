// ParseJson: simdjson On Demand → Value, with marks, depth and size limits.

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>
#include <type_traits>

#include "value/internal/node.h"
#include "value/internal/resolve.h"
#include "value/value.h"

namespace gantry::value {
namespace {

namespace od = simdjson::ondemand;
using internal::MapNode;
using internal::Node;
using internal::SeqNode;
using internal::SourceFile;

// Line and column of byte offsets that mostly increase, in amortised O(1) per call: API responses
// are one long line, so the column must not be recounted from the line start each time.
class LineCounter {
 public:
  explicit LineCounter(std::string_view text) : text_(text) {}
  void At(size_t off, uint32_t* line, uint32_t* column) {
    off = std::min(off, text_.size());
    if (off < pos_) pos_ = 0, line_ = 1, column_ = 1;
    for (; pos_ < off; ++pos_) {
      unsigned char c = static_cast<unsigned char>(text_[pos_]);
      if (c == '\n') {
        ++line_;
        column_ = 1;
      } else if ((c & 0xC0) != 0x80) {  // columns count characters, not UTF-8 continuation bytes
        ++column_;
      }
    }
    *line = line_;
    *column = column_;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  uint32_t line_ = 1;
  uint32_t column_ = 1;
};

// Finds the first syntax error of a JSON text, for messages only: simdjson reports many errors
// without a position. Returns false when it finds none.
struct SyntaxError {
  size_t offset = 0;
  std::string what;
  bool too_deep = false;
};

bool LocateSyntaxError(std::string_view t, size_t max_depth, SyntaxError* e) {
  enum State { kValue, kValueOrClose, kKey, kKeyOrClose, kColon, kAfter };
  std::vector<char> stack;
  State st = kValue;
  size_t i = 0, n = t.size();
  auto fail = [&](size_t at, std::string what) {
    e->offset = at;
    e->what = std::move(what);
    return true;
  };
  auto scan_string = [&](size_t start) -> bool {  // true on error
    for (i = start + 1; i < n; ++i) {
      auto c = static_cast<unsigned char>(t[i]);
      if (c == '"') return ++i, false;
      if (c < 0x20) return fail(i, "control character in string");
      if (c == '\\') {
        if (++i >= n) break;
        if (t[i] == 'u') {
          for (int k = 0; k < 4; ++k) {
            if (++i >= n || !std::isxdigit(static_cast<unsigned char>(t[i]))) {
              return fail(i, "invalid \\u escape");
            }
          }
        } else if (std::string_view("\"\\/bfnrt").find(t[i]) == std::string_view::npos) {
          return fail(i - 1, "invalid escape");
        }
      }
    }
    return fail(start, "unterminated string");
  };
  auto digits = [&] {
    size_t s0 = i;
    while (i < n && t[i] >= '0' && t[i] <= '9') ++i;
    return i > s0;
  };
  for (;;) {
    while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) ++i;
    if (i == n) {
      if (stack.empty() && st == kAfter) return false;
      return fail(n, "unexpected end of input");
    }
    char c = t[i];
    if (st == kValueOrClose && c == ']') {
      stack.pop_back(), ++i, st = kAfter;
      continue;
    }
    if (st == kKeyOrClose && c == '}') {
      stack.pop_back(), ++i, st = kAfter;
      continue;
    }
    switch (st) {
      case kValue:
      case kValueOrClose:
        if (c == '{' || c == '[') {
          stack.push_back(c);
          if (stack.size() > max_depth) {
            e->too_deep = true;
            return fail(i, "");
          }
          ++i;
          st = c == '{' ? kKeyOrClose : kValueOrClose;
        } else if (c == '"') {
          if (scan_string(i)) return true;
          st = kAfter;
        } else if (c == 't' || c == 'f' || c == 'n') {
          std::string_view word = c == 't' ? "true" : c == 'f' ? "false" : "null";
          if (t.substr(i, word.size()) != word) return fail(i, "invalid literal");
          i += word.size();
          st = kAfter;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
          size_t start = i;
          if (c == '-') ++i;
          if (i < n && t[i] == '0') {
            ++i;
          } else if (!digits()) {
            return fail(start, "invalid number");
          }
          if (i < n && t[i] == '.' && (++i, !digits())) return fail(start, "invalid number");
          if (i < n && (t[i] == 'e' || t[i] == 'E')) {
            ++i;
            if (i < n && (t[i] == '+' || t[i] == '-')) ++i;
            if (!digits()) return fail(start, "invalid number");
          }
          st = kAfter;
        } else {
          return fail(i, fmt::format("unexpected character '{}'", c));
        }
        break;
      case kKey:
      case kKeyOrClose:
        if (c != '"') return fail(i, "expected a string key");
        if (scan_string(i)) return true;
        st = kColon;
        break;
      case kColon:
        if (c != ':') return fail(i, "expected ':'");
        ++i;
        st = kValue;
        break;
      case kAfter:
        if (stack.empty()) return fail(i, "unexpected content after the JSON value");
        if (c == ',') {
          ++i;
          st = stack.back() == '{' ? kKey : kValue;
        } else if ((c == '}' && stack.back() == '{') || (c == ']' && stack.back() == '[')) {
          stack.pop_back();
          ++i;
        } else {
          return fail(i, stack.back() == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
        break;
    }
  }
}

class Builder {
 public:
  Builder(std::string_view text, std::string_view filename, const ParseOptions& options)
      : text_(text), lines_(text), options_(options) {
    file_ = new SourceFile(filename);
  }
  ~Builder() { SourceFile::Unref(file_); }

  Result<Value> Run() {
    if (size_t limit = std::min(options_.max_document_bytes, internal::kMaxMarkedBytes);
        text_.size() > limit) {
      return ResourceExhaustedError("{}:1:1: document is larger than {} bytes (limit {})",
                                    file_->name, limit, limit);
    }
    padded_ = simdjson::padded_string(text_);
    od::parser parser;
    if (auto err = parser.allocate(std::max<size_t>(padded_.size(), 64), options_.max_depth)) {
      return ResourceExhaustedError("{}:1:1: {}", file_->name, simdjson::error_message(err));
    }
    od::document doc;
    auto err = parser.iterate(padded_).get(doc);
    Value out;
    if (err) return Error(nullptr, err);
    err = Build(doc, &out);
    const char* rest = nullptr;
    if (!err && (out.IsMap() || out.IsSeq()) && !doc.current_location().get(rest)) {
      error_at_ = rest;
      err = simdjson::TRAILING_CONTENT;
    }
    if (err) return Error(&doc, err);
    return out;
  }

 private:
  // doc is null when simdjson's first pass failed (then the document cannot be asked).
  Status Error(od::document* doc, simdjson::error_code err) {
    size_t off = text_.size();
    const char* loc = nullptr;
    if (error_at_) {
      off = static_cast<size_t>(error_at_ - padded_.data());
    } else if (doc && !doc->current_location().get(loc)) {
      off = static_cast<size_t>(loc - padded_.data());
    } else if (err == simdjson::UTF8_ERROR) {
      uint32_t cp;
      for (off = 0; off < text_.size();) {
        size_t n = internal::DecodeUtf8(text_, off, &cp);
        if (n == 0) break;
        off += n;
      }
    }
    std::string what;
    SyntaxError syntax;
    if (duplicate_.empty() && LocateSyntaxError(text_, options_.max_depth, &syntax)) {
      off = syntax.offset;
      what = syntax.what;
      if (syntax.too_deep) err = simdjson::DEPTH_ERROR;
    }
    uint32_t line, column;
    lines_.At(off, &line, &column);
    switch (err) {
      case simdjson::DEPTH_ERROR:
        return ResourceExhaustedError("{}:{}:{}: nesting deeper than {} levels (limit {})",
                                      file_->name, line, column, options_.max_depth,
                                      options_.max_depth);
      default:
        if (!what.empty()) break;
        what = simdjson::error_message(err);
        if (auto colon = what.find(": "); colon != std::string::npos && colon < 24) {
          what = what.substr(colon + 2);  // drop simdjson's "TAPE_ERROR: " style prefix
        }
    }
    if (!duplicate_.empty()) what = fmt::format("duplicate key \"{}\"", duplicate_);
    return InvalidArgumentError("{}:{}:{}: {}", file_->name, line, column, what);
  }

  template <typename T>
  Value Scalar(Value::Type type, T x) {
    auto* n = internal::New<internal::ScalarNode>(file_, type);
    if constexpr (std::is_same_v<T, bool>) n->b = x;
    if constexpr (std::is_same_v<T, int64_t>) n->i = x;
    if constexpr (std::is_same_v<T, double>) n->d = x;
    return Node::Wrap(n);
  }
  Value Str(std::string_view s) { return Node::Wrap(internal::StringNode::Make(s, file_)); }

  void SetMark(Value& v, const char* begin, size_t len) {
    size_t off = static_cast<size_t>(begin - padded_.data());
    uint32_t line, column;
    lines_.At(off, &line, &column);
    Node::Get(v)->SetMark(file_, line, column, off, off + len);
  }

  // Where a map or sequence starts, taken before its children move the line counter past it.
  struct Pos {
    size_t off;
    uint32_t line, column;
  };
  Pos PosOf(const char* begin) {
    Pos p{static_cast<size_t>(begin - padded_.data()), 0, 0};
    lines_.At(p.off, &p.line, &p.column);
    return p;
  }
  void SetMark(Value& v, const Pos& p) { Node::Get(v)->SetMark(file_, p.line, p.column, p.off, p.off); }

  template <typename V>
  static simdjson::error_code RawToken(V& val, std::string_view* out) {
    if constexpr (std::is_same_v<V, od::value>) {
      *out = val.raw_json_token();
      return simdjson::SUCCESS;
    } else {
      return val.raw_json_token().get(*out);
    }
  }

  // Works for the document (a scalar root) and for values.
  template <typename V>
  simdjson::error_code Build(V& val, Value* out) {
    const char* at = nullptr;
    if (auto err = val.current_location().get(at)) return err;
    od::json_type type;
    if (auto err = val.type().get(type)) return error_at_ = at, err;
    switch (type) {
      case od::json_type::object: {
        od::object obj;
        if (auto err = val.get_object().get(obj)) return error_at_ = at, err;
        Pos start = PosOf(at);
        Value map = Node::Wrap(internal::New<MapNode>(file_));
        auto* m = static_cast<MapNode*>(Node::Get(map));
        for (auto field : obj) {
          const char* key_at = nullptr;
          std::string_view key;
          if (auto err = field.error()) return err;
          key_at = field.value_unsafe().key().raw() - 1;
          if (auto err = field.value_unsafe().unescaped_key().get(key)) return err;
          if (m->Find(key) >= 0) {
            duplicate_ = std::string(key);
            error_at_ = key_at;
            return simdjson::TAPE_ERROR;
          }
          Value k = Str(key);
          SetMark(k, key_at, 0);
          od::value child;
          if (auto err = field.value().get(child)) return err;
          Value v;
          if (auto err = Build(child, &v)) return err;
          m->AppendNew(std::move(k), std::move(v));
        }
        *out = std::move(map);
        SetMark(*out, start);
        return simdjson::SUCCESS;
      }
      case od::json_type::array: {
        od::array arr;
        if (auto err = val.get_array().get(arr)) return error_at_ = at, err;
        Pos start = PosOf(at);
        Value seq = Node::Wrap(internal::New<SeqNode>(file_));
        auto* s = static_cast<SeqNode*>(Node::Get(seq));
        for (auto item : arr) {
          od::value child;
          if (auto err = item.get(child)) return err;
          Value v;
          if (auto err = Build(child, &v)) return err;
          s->items.push_back(std::move(v));
        }
        *out = std::move(seq);
        SetMark(*out, start);
        return simdjson::SUCCESS;
      }
      case od::json_type::number: {
        std::string_view raw;
        if (auto err = RawToken(val, &raw)) return error_at_ = at, err;
        while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' ||
                                raw.back() == '\t')) {
          raw.remove_suffix(1);
        }
        // simdjson 3.0's get_number() misreads decimals with more than 19 digits; get_double()
        // does not. Integers outside int64 become doubles.
        bool integer = raw.find_first_of(".eE") == std::string_view::npos;
        int64_t i;
        double d;
        if (integer && !val.get_int64().get(i)) {
          *out = Scalar(Value::Type::kInt, i);
        } else if (auto err = val.get_double().get(d)) {
          return error_at_ = at, err;
        } else {
          *out = Scalar(Value::Type::kDouble, d);
        }
        SetMark(*out, at, raw.size());
        return simdjson::SUCCESS;
      }
      case od::json_type::string: {
        std::string_view raw, s;
        if (auto err = RawToken(val, &raw)) return error_at_ = at, err;
        if (auto err = val.get_string().get(s)) return error_at_ = at, err;
        *out = Str(s);
        size_t end = raw.size();
        while (end > 0 && raw[end - 1] != '"') --end;
        SetMark(*out, at, end);
        return simdjson::SUCCESS;
      }
      case od::json_type::boolean: {
        bool b;
        if (auto err = val.get_bool().get(b)) return error_at_ = at, err;
        *out = Scalar(Value::Type::kBool, b);
        SetMark(*out, at, b ? 4 : 5);
        return simdjson::SUCCESS;
      }
      case od::json_type::null: {
        bool is_null = false;
        if (auto err = val.is_null().get(is_null)) return error_at_ = at, err;
        if (!is_null) return error_at_ = at, simdjson::N_ATOM_ERROR;
        *out = Scalar(Value::Type::kNull, false);
        SetMark(*out, at, 4);
        return simdjson::SUCCESS;
      }
    }
    return error_at_ = at, simdjson::INCORRECT_TYPE;
  }

  std::string_view text_;
  LineCounter lines_;
  const ParseOptions& options_;
  SourceFile* file_;
  simdjson::padded_string padded_;
  const char* error_at_ = nullptr;
  std::string duplicate_;
};

}  // namespace

Result<Value> ParseJson(std::string_view text, std::string_view filename,
                        const ParseOptions& options) {
  Builder builder(text, filename, options);
  return builder.Run();
}

}  // namespace gantry::value
