// ParseYaml: Gantry's own scanner (yaml_fast.cc) first; libyaml's events → YamlBuilder for what it
// leaves (constructs it does not take, and every error).

#include <yaml.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/log.h"
#include "value/internal/yaml_builder.h"
#include "value/internal/yaml_fast.h"
#include "value/value.h"

namespace gantry::value {
namespace {

using internal::YamlBuilder;
using internal::YamlPos;

// libyaml counts marks in characters; Marks hold byte offsets. Converts with a cursor that moves
// forwards or backwards by whole UTF-8 characters (events arrive nearly in order).
class OffsetMapper {
 public:
  explicit OffsetMapper(std::string_view text) : text_(text) {
    if (text.starts_with("\xEF\xBB\xBF")) bom_ = 3;
    unsigned char any = 0;
    for (char c : text) any |= static_cast<unsigned char>(c);
    ascii_ = any < 0x80;
    byte_ = bom_;
  }

  size_t ToByte(size_t index) {
    if (ascii_) return std::min(index + bom_, text_.size());
    while (char_ < index && byte_ < text_.size()) {
      ++byte_;
      while (byte_ < text_.size() && (static_cast<unsigned char>(text_[byte_]) & 0xC0) == 0x80) {
        ++byte_;
      }
      ++char_;
    }
    while (char_ > index && byte_ > bom_) {
      --byte_;
      while (byte_ > bom_ && (static_cast<unsigned char>(text_[byte_]) & 0xC0) == 0x80) --byte_;
      --char_;
    }
    return byte_;
  }

 private:
  std::string_view text_;
  size_t bom_ = 0;
  bool ascii_ = true;
  size_t char_ = 0;
  size_t byte_ = 0;
};

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() {
    if (live_) yaml_event_delete(&e_);
  }
  bool Next(yaml_parser_t* p) {
    if (live_) yaml_event_delete(&e_);
    live_ = yaml_parser_parse(p, &e_) != 0;
    return live_;
  }
  const yaml_event_t& get() const { return e_; }

 private:
  yaml_event_t e_{};
  bool live_ = false;
};

// Feeds libyaml's events to the YamlBuilder.
class LibyamlParser {
 public:
  LibyamlParser(std::string_view text, std::string_view filename, const ParseOptions& options)
      : text_(text), offsets_(text), builder_(text, filename, options) {
    yaml_parser_initialize(&parser_);
    yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()),
                                 text.size());
  }
  ~LibyamlParser() { yaml_parser_delete(&parser_); }

  Result<std::vector<Value>> Run() {
    Event ev;
    for (;;) {
      if (!ev.Next(&parser_)) return LibyamlError();
      const yaml_event_t& e = ev.get();
      if (e.type == YAML_STREAM_END_EVENT) return builder_.TakeDocuments();
      if (!Feed(e)) return builder_.TakeError();
    }
  }

 private:
  // Passes one event to the builder; false when the builder refuses it.
  bool Feed(const yaml_event_t& e) {
    switch (e.type) {
      case YAML_DOCUMENT_START_EVENT:
        return builder_.StartDocument(Pos(e.start_mark));
      case YAML_DOCUMENT_END_EVENT:
        return builder_.EndDocument(Pos(e.end_mark));
      case YAML_ALIAS_EVENT:
        return builder_.Alias(Str(e.data.alias.anchor), Pos(e.start_mark));
      case YAML_SCALAR_EVENT: {
        const auto& s = e.data.scalar;
        return builder_.Scalar(std::string_view(reinterpret_cast<const char*>(s.value), s.length),
                               s.style == YAML_PLAIN_SCALAR_STYLE && s.plain_implicit, Str(s.tag),
                               Str(s.anchor), Pos(e.start_mark), Pos(e.end_mark));
      }
      case YAML_SEQUENCE_START_EVENT:
        return builder_.StartCollection(false, Str(e.data.sequence_start.anchor),
                                        Pos(e.start_mark), Pos(e.end_mark));
      case YAML_MAPPING_START_EVENT:
        return builder_.StartCollection(true, Str(e.data.mapping_start.anchor),
                                        Pos(e.start_mark), Pos(e.end_mark));
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        return builder_.EndCollection(Pos(e.start_mark), Pos(e.end_mark));
      default:  // stream start, no event
        return true;
    }
  }

  YamlPos Pos(const yaml_mark_t& m) {
    return YamlPos{static_cast<uint32_t>(m.line + 1), static_cast<uint32_t>(m.column + 1),
                   offsets_.ToByte(m.index)};
  }

  static std::string_view Str(const yaml_char_t* s) {
    return s ? std::string_view(reinterpret_cast<const char*>(s)) : std::string_view();
  }

  Status LibyamlError() {
    const std::string& filename = builder_.filename();
    std::string problem = parser_.problem ? parser_.problem : "syntax error";
    Code code = parser_.error == YAML_MEMORY_ERROR ? Code::kResourceExhausted
                                                    : Code::kInvalidArgument;
    std::string where;
    if (parser_.error == YAML_READER_ERROR) {
      // Only a byte offset is known: count lines up to it.
      size_t off = std::min(parser_.problem_offset, text_.size());
      size_t line = 1 + static_cast<size_t>(std::count(text_.begin(), text_.begin() + off, '\n'));
      size_t nl = text_.rfind('\n', off == 0 ? 0 : off - 1);
      size_t col = nl == std::string_view::npos || off == 0 ? off + 1 : off - nl;
      where = fmt::format("{}:{}:{}", filename, line, col);
      if (parser_.problem_value != -1) {
        problem += fmt::format(" (byte 0x{:02x})", parser_.problem_value);
      }
    } else {
      const yaml_mark_t& m = parser_.problem_mark;
      where = fmt::format("{}:{}:{}", filename, m.line + 1, m.column + 1);
      if (parser_.context) {
        problem += fmt::format(" ({} at line {} column {})", parser_.context,
                               parser_.context_mark.line + 1, parser_.context_mark.column + 1);
      }
    }
    return Status(code, fmt::format("{}: {}", where, problem));
  }

  std::string_view text_;
  OffsetMapper offsets_;
  YamlBuilder builder_;
  yaml_parser_t parser_;
};

}  // namespace

namespace internal {

Result<std::vector<Value>> ParseYamlLibyaml(std::string_view text, std::string_view filename,
                                            const ParseOptions& options) {
  LibyamlParser parser(text, filename, options);
  return parser.Run();
}

}  // namespace internal

Result<std::vector<Value>> ParseYaml(std::string_view text, std::string_view filename,
                                     const ParseOptions& options) {
  if (!options.use_libyaml) {
    auto fast = internal::ParseYamlFast(text, filename, options);
    if (fast.ok()) return fast;
    // Whatever the scanner does not take (a construct left to libyaml, or an error, whose
    // message libyaml then gives exactly as before) is parsed again by libyaml.
    if (fast.status().code() == Code::kFailedPrecondition) {
      log::Debug("yaml: {}", fast.status().message());
    }
  }
  return internal::ParseYamlLibyaml(text, filename, options);
}

Value BuiltInYaml(std::string_view text, std::string_view filename) {
  auto docs = ParseYaml(text, filename);
  if (!docs.ok()) DieBecause(fmt::format("built-in YAML {}", docs.status().ToString()));
  GANTRY_CHECK(docs->size() == 1);
  return std::move((*docs)[0]);
}

}  // namespace gantry::value

namespace gantry::value {
namespace {

std::string MarkText(const Mark& m) {
  return fmt::format("{}:{}:{} [{},{})", m.file, m.line, m.column, m.begin, m.end);
}

// The first difference between a and b (values and marks) under `path`, or "".
std::string DiffNode(const Value& a, const Value& b, const std::string& path) {
  if (a.type() != b.type()) {
    return fmt::format("{}: {} vs {}", path, TypeName(a), TypeName(b));
  }
  std::string ma = MarkText(a.mark());
  std::string mb = MarkText(b.mark());
  if (ma != mb) return fmt::format("{}: mark {} vs {}", path, ma, mb);
  if (a.IsSeq()) {
    if (a.size() != b.size()) return fmt::format("{}: {} vs {} items", path, a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      std::string d = DiffNode(a.items()[i], b.items()[i], fmt::format("{}[{}]", path, i));
      if (!d.empty()) return d;
    }
    return "";
  }
  if (a.IsMap()) {
    if (a.size() != b.size()) return fmt::format("{}: {} vs {} keys", path, a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      const MapEntry& ea = a.entries()[i];
      const MapEntry& eb = b.entries()[i];
      std::string sub = fmt::format("{}.{}", path, ea.key.AsString());
      std::string d = DiffNode(ea.key, eb.key, sub + " (key)");
      if (d.empty()) d = DiffNode(ea.value, eb.value, sub);
      if (!d.empty()) return d;
    }
    return "";
  }
  if (!(a == b)) return fmt::format("{}: {} vs {}", path, ToJson(a), ToJson(b));
  return "";
}

}  // namespace

std::string DiffParses(const Result<std::vector<Value>>& a, const Result<std::vector<Value>>& b) {
  if (!a.ok() || !b.ok()) {
    if (a.status() == b.status()) return "";
    return fmt::format("{} vs {}", a.status().ToString(), b.status().ToString());
  }
  if (a->size() != b->size()) return fmt::format("{} vs {} documents", a->size(), b->size());
  for (size_t i = 0; i < a->size(); ++i) {
    std::string d = DiffNode((*a)[i], (*b)[i], fmt::format("doc {}", i));
    if (!d.empty()) return d;
  }
  return "";
}

}  // namespace gantry::value
