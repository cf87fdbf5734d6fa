// ParseYaml: libyaml events → Value trees, iteratively, with marks and limits.

#include <yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "value/internal/node.h"
#include "value/internal/resolve.h"
#include "value/value.h"

namespace gantry::value {
namespace {

using internal::MapNode;
using internal::Node;
using internal::SeqNode;
using internal::SourceFile;
using internal::StringNode;
using Type = Value::Type;

constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";

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

struct Anchor {
  Value value;
  uint64_t count;   // nodes in the subtree, aliases expanded
  uint32_t height;  // levels of maps and sequences in the subtree
};

// A map or sequence being filled. Its children sit on the parser's shared stacks (items_ or
// entries_) from `first` on, and move into the node, sized exactly, when it ends.
struct Frame {
  Node* node;  // owned reference
  bool is_map;
  size_t first;
  bool have_key = false;
  bool key_is_merge = false;
  Value key;
  std::string anchor;
  uint64_t count = 1;
  uint32_t height = 1;
  std::vector<bool> from_merge;  // map entries that came from a merge key; empty if none
  std::unique_ptr<std::unordered_map<std::string_view, size_t>> index;  // for large maps
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

class Parser {
 public:
  Parser(std::string_view text, std::string_view filename, const ParseOptions& options)
      : text_(text), filename_(filename), options_(options), offsets_(text) {
    file_ = new SourceFile(filename);
    yaml_parser_initialize(&parser_);
    yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()),
                                 text.size());
  }
  ~Parser() {
    for (Frame& f : stack_) Node::Unref(f.node);
    items_.clear();
    entries_.clear();
    yaml_parser_delete(&parser_);
    SourceFile::Unref(file_);
  }

  Result<std::vector<Value>> Run() {
    std::vector<Value> docs;
    Event ev;
    for (;;) {
      if (!ev.Next(&parser_)) return LibyamlError();
      const yaml_event_t& e = ev.get();
      switch (e.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_NO_EVENT:
          break;
        case YAML_STREAM_END_EVENT:
          return docs;
        case YAML_DOCUMENT_START_EVENT:
          if (++documents_ > options_.max_documents) {
            return ResourceExhaustedError("{}: too many documents (limit {})",
                                          Where(e.start_mark), options_.max_documents);
          }
          doc_start_ = offsets_.ToByte(e.start_mark.index);
          // One arena per document, so keeping one document keeps only its memory. Its first
          // chunk is what the previous document used, and a little more (the documents of one
          // stream tend to be alike: a hundred ConfigMaps), or for the first one about 12 bytes
          // of nodes per byte of text; so a kept document holds little unused tail (a fixed
          // 4 KiB chunk was 4 times what a small object needs).
          {
            size_t previous = file_->used;
            size_t first = previous > 0 ? previous + previous / 16 : text_.size() * 12;
            SourceFile::Unref(file_);
            file_ = new SourceFile(filename_);
            file_->next_chunk = std::clamp<size_t>((first + 7) & ~size_t{7}, 256, previous > 0 ? 256 * 1024 : 4096);
          }
          anchors_.clear();
          alias_nodes_ = 0;
          root_ = Value();
          break;
        case YAML_DOCUMENT_END_EVENT:
          GANTRY_RETURN_IF_ERROR(CheckSize(e.end_mark));
          if (!root_.IsNull()) docs.push_back(std::move(root_));
          root_ = Value();
          break;
        case YAML_ALIAS_EVENT:
          GANTRY_RETURN_IF_ERROR(OnAlias(e));
          break;
        case YAML_SCALAR_EVENT:
          GANTRY_RETURN_IF_ERROR(CheckSize(e.end_mark));
          GANTRY_RETURN_IF_ERROR(OnScalar(e));
          break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
          GANTRY_RETURN_IF_ERROR(CheckSize(e.end_mark));
          GANTRY_RETURN_IF_ERROR(OnStart(e));
          break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
          GANTRY_RETURN_IF_ERROR(OnEnd(e));
          break;
      }
    }
  }

 private:
  std::string Where(const yaml_mark_t& m) const {
    return fmt::format("{}:{}:{}", filename_, m.line + 1, m.column + 1);
  }

  Status LibyamlError() {
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
      where = fmt::format("{}:{}:{}", filename_, line, col);
      if (parser_.problem_value != -1) {
        problem += fmt::format(" (byte 0x{:02x})", parser_.problem_value);
      }
    } else {
      where = Where(parser_.problem_mark);
      if (parser_.context) {
        problem += fmt::format(" ({} at line {} column {})", parser_.context,
                               parser_.context_mark.line + 1, parser_.context_mark.column + 1);
      }
    }
    return Status(code, fmt::format("{}: {}", where, problem));
  }

  Status CheckSize(const yaml_mark_t& end) {
    size_t size = offsets_.ToByte(end.index) - std::min(doc_start_, offsets_.ToByte(end.index));
    if (size > options_.max_document_bytes) {
      return ResourceExhaustedError("{}: document is larger than {} bytes (limit {})", Where(end),
                                    options_.max_document_bytes, options_.max_document_bytes);
    }
    return OkStatus();
  }

  void SetMark(Node* n, const yaml_mark_t& start, const yaml_mark_t& end) {
    n->SetMark(file_, static_cast<uint32_t>(start.line + 1), static_cast<uint32_t>(start.column + 1),
               offsets_.ToByte(start.index), offsets_.ToByte(end.index));
  }

  static std::string_view Str(const yaml_char_t* s) {
    return s ? std::string_view(reinterpret_cast<const char*>(s)) : std::string_view();
  }

  bool ExpectingKey() const { return !stack_.empty() && stack_.back().is_map && !stack_.back().have_key; }

  Status OnScalar(const yaml_event_t& e) {
    const auto& s = e.data.scalar;
    std::string_view text(reinterpret_cast<const char*>(s.value), s.length);
    std::string_view tag = Str(s.tag);
    bool plain = s.style == YAML_PLAIN_SCALAR_STYLE;
    Value v;
    if (tag.empty()) {
      if (plain && s.plain_implicit) {
        if (text == "<<" && ExpectingKey()) {
          stack_.back().key_is_merge = true;
          stack_.back().have_key = true;
          return OkStatus();
        }
        v = internal::ToValue(internal::ResolvePlain(text), text, file_);
      } else {
        v = Str(text);
      }
    } else if (tag.starts_with(kTagPrefix)) {
      std::string_view kind = tag.substr(kTagPrefix.size());
      if (kind == "merge" && ExpectingKey()) {
        stack_.back().key_is_merge = true;
        stack_.back().have_key = true;
        return OkStatus();
      }
      GANTRY_ASSIGN_OR_RETURN(v, Tagged(kind, text, e));
    } else {
      v = Str(text);  // "!" or an application tag: the text as a string
    }
    SetMark(Node::Get(v), e.start_mark, e.end_mark);
    if (s.anchor) anchors_[std::string(Str(s.anchor))] = Anchor{v, 1, 0};
    return Add(std::move(v), 1, 0, e.start_mark);
  }

  Result<Value> Tagged(std::string_view kind, std::string_view text, const yaml_event_t& e) {
    if (kind == "str" || kind == "binary" || kind == "timestamp") return Str(text);
    internal::Resolved r = internal::ResolvePlain(text);
    Type want;
    if (kind == "int") {
      want = Type::kInt;
    } else if (kind == "float") {
      want = Type::kDouble;
      if (r.type == Type::kInt) {
        r.type = Type::kDouble;
        r.d = static_cast<double>(r.i);
      }
    } else if (kind == "bool") {
      want = Type::kBool;
    } else if (kind == "null") {
      want = Type::kNull;
    } else {
      return Str(text);  // !!map on a scalar and other oddities: keep the text
    }
    if (r.type != want) {
      return InvalidArgumentError("{}: cannot read \"{}\" as !!{}", Where(e.start_mark), text, kind);
    }
    return internal::ToValue(r, text, file_);
  }

  Value Str(std::string_view text) { return Node::Wrap(StringNode::Make(text, file_)); }

  Status OnAlias(const yaml_event_t& e) {
    std::string name(Str(e.data.alias.anchor));
    auto it = anchors_.find(name);
    if (it == anchors_.end()) {
      return InvalidArgumentError("{}: unknown anchor \"{}\" (or an alias inside its own anchor)",
                                  Where(e.start_mark), name);
    }
    const Anchor& a = it->second;
    alias_nodes_ += a.count;
    if (alias_nodes_ > options_.max_alias_nodes) {
      return ResourceExhaustedError("{}: aliases expand to more than {} nodes (limit {})",
                                    Where(e.start_mark), options_.max_alias_nodes,
                                    options_.max_alias_nodes);
    }
    if (stack_.size() + a.height > options_.max_depth) {
      return ResourceExhaustedError("{}: alias \"{}\" nests deeper than {} levels (limit {})",
                                    Where(e.start_mark), name, options_.max_depth,
                                    options_.max_depth);
    }
    return Add(a.value, a.count, a.height, e.start_mark);
  }

  Status OnStart(const yaml_event_t& e) {
    if (stack_.size() + 1 > options_.max_depth) {
      return ResourceExhaustedError("{}: nesting deeper than {} levels (limit {})",
                                    Where(e.start_mark), options_.max_depth, options_.max_depth);
    }
    bool is_map = e.type == YAML_MAPPING_START_EVENT;
    if (ExpectingKey()) {
      return InvalidArgumentError("{}: a {} cannot be a map key", Where(e.start_mark),
                                  is_map ? "map" : "sequence");
    }
    Node* n = is_map ? static_cast<Node*>(internal::New<MapNode>(file_))
                     : internal::New<SeqNode>(file_);
    SetMark(n, e.start_mark, e.end_mark);
    const yaml_char_t* anchor = is_map ? e.data.mapping_start.anchor : e.data.sequence_start.anchor;
    stack_.push_back(Frame{n, is_map, is_map ? entries_.size() : items_.size()});
    if (anchor) stack_.back().anchor = std::string(Str(anchor));
    return OkStatus();
  }

  Status OnEnd(const yaml_event_t& e) {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    f.node->end = offsets_.ToByte(e.end_mark.index);
    Value v = Node::Wrap(f.node);
    if (f.is_map) {
      auto* m = static_cast<MapNode*>(f.node);
      m->entries.assign(std::make_move_iterator(entries_.begin() + static_cast<ptrdiff_t>(f.first)),
                        std::make_move_iterator(entries_.end()));
      entries_.resize(f.first);
      m->RebuildIndex();
    } else {
      auto* s = static_cast<SeqNode*>(f.node);
      s->items.assign(std::make_move_iterator(items_.begin() + static_cast<ptrdiff_t>(f.first)),
                      std::make_move_iterator(items_.end()));
      items_.resize(f.first);
    }
    if (!f.anchor.empty()) anchors_[f.anchor] = Anchor{v, f.count, f.height};
    return Add(std::move(v), f.count, f.height, e.start_mark);
  }

  // Converts a resolved key to the string Kubernetes would use.
  Result<Value> KeyString(const Value& k, const yaml_mark_t& at) {
    std::string s;
    switch (k.type()) {
      case Type::kString:
        return k;
      case Type::kBool:
        s = k.AsBool() ? "true" : "false";
        break;
      case Type::kInt:
        s = std::to_string(k.AsInt());
        break;
      case Type::kDouble: {
        double d = k.AsDouble();
        if (std::isnan(d) || std::isinf(d)) {
          internal::AppendDouble(s, d, /*yaml=*/true);
        } else {
          char buf[64];
          auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<float>(d));
          s.assign(buf, ptr);
        }
        break;
      }
      case Type::kNull:
        return InvalidArgumentError("{}: null map key", Where(at));
      default:
        return InvalidArgumentError("{}: a map or sequence cannot be a map key", Where(at));
    }
    Value out = Str(s);
    Node* from = Node::Get(k);
    Node::Get(out)->SetMark(file_, from->line, from->column, from->begin, from->end);
    return out;
  }

  // Adds a finished node to the open container, or makes it the document root.
  Status Add(Value v, uint64_t count, uint32_t height, const yaml_mark_t& at) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return OkStatus();
    }
    Frame& f = stack_.back();
    f.count += count;
    f.height = std::max(f.height, height + 1);
    if (!f.is_map) {
      items_.push_back(std::move(v));
      return OkStatus();
    }
    if (!f.have_key) {
      GANTRY_ASSIGN_OR_RETURN(f.key, KeyString(v, at));
      f.have_key = true;
      return OkStatus();
    }
    f.have_key = false;
    if (f.key_is_merge) {
      f.key_is_merge = false;
      return Merge(f, v, at);
    }
    std::string_view key = internal::StringOf(f.key);
    ptrdiff_t pos = FindEntry(f, key);
    if (pos < 0) {
      if (!f.from_merge.empty()) f.from_merge.push_back(false);
      AppendEntry(f, std::move(f.key), std::move(v));
      return OkStatus();
    }
    auto p = static_cast<size_t>(pos);
    if (p < f.from_merge.size() && f.from_merge[p]) {
      // The key's text stays alive in the new entry; the index may keep pointing at the old one.
      entries_[f.first + p] = MapEntry{std::move(f.key), std::move(v)};
      if (f.index) {
        f.index->erase(key);
        f.index->emplace(internal::KeyOf(entries_[f.first + p]), p);
      }
      f.from_merge[p] = false;
      return OkStatus();
    }
    Mark first = entries_[f.first + p].key.mark();
    Mark dup = f.key.mark();
    return InvalidArgumentError("{}:{}:{}: duplicate key \"{}\" (first at line {} column {})",
                                filename_, dup.line, dup.column, key, first.line, first.column);
  }

  // Position of `key` among the entries of map frame f, or -1.
  ptrdiff_t FindEntry(const Frame& f, std::string_view key) const {
    if (f.index) {
      auto it = f.index->find(key);
      return it == f.index->end() ? -1 : static_cast<ptrdiff_t>(it->second);
    }
    for (size_t i = f.first; i < entries_.size(); ++i) {
      if (internal::KeyOf(entries_[i]) == key) return static_cast<ptrdiff_t>(i - f.first);
    }
    return -1;
  }

  void AppendEntry(Frame& f, Value key, Value value) {
    entries_.push_back(MapEntry{std::move(key), std::move(value)});
    size_t n = entries_.size() - f.first;
    if (f.index) {
      f.index->emplace(internal::KeyOf(entries_.back()), n - 1);
    } else if (n > MapNode::kIndexThreshold) {
      f.index = std::make_unique<std::unordered_map<std::string_view, size_t>>();
      for (size_t i = f.first; i < entries_.size(); ++i) {
        f.index->emplace(internal::KeyOf(entries_[i]), i - f.first);
      }
    }
  }

  Status MergeOne(Frame& f, const Value& src, const yaml_mark_t& at) {
    if (!src.IsMap()) {
      return InvalidArgumentError("{}: merge key << needs a map or a sequence of maps",
                                  Where(at));
    }
    size_t n = entries_.size() - f.first;
    if (f.from_merge.size() < n) f.from_merge.resize(n, false);
    for (const MapEntry& e : src.entries()) {
      if (FindEntry(f, internal::KeyOf(e)) >= 0) continue;  // explicit keys and earlier merges win
      AppendEntry(f, e.key, e.value);
      f.from_merge.push_back(true);
    }
    return OkStatus();
  }

  Status Merge(Frame& f, const Value& v, const yaml_mark_t& at) {
    if (v.IsSeq()) {
      for (const Value& item : v.items()) GANTRY_RETURN_IF_ERROR(MergeOne(f, item, at));
      return OkStatus();
    }
    return MergeOne(f, v, at);
  }

  std::string_view text_;
  std::string filename_;
  const ParseOptions& options_;
  OffsetMapper offsets_;
  SourceFile* file_;
  yaml_parser_t parser_;
  std::vector<Frame> stack_;
  std::vector<Value> items_;      // children of the open sequences
  std::vector<MapEntry> entries_;  // children of the open maps
  std::unordered_map<std::string, Anchor> anchors_;
  Value root_;
  size_t documents_ = 0;
  size_t doc_start_ = 0;
  uint64_t alias_nodes_ = 0;
};

}  // namespace

Result<std::vector<Value>> ParseYaml(std::string_view text, std::string_view filename,
                                     const ParseOptions& options) {
  Parser parser(text, filename, options);
  return parser.Run();
}

Value BuiltInYaml(std::string_view text, std::string_view filename) {
  auto docs = ParseYaml(text, filename);
  if (!docs.ok()) DieBecause(fmt::format("built-in YAML {}", docs.status().ToString()));
  GANTRY_CHECK(docs->size() == 1);
  return std::move((*docs)[0]);
}

}  // namespace gantry::value
