// YamlBuilder: parse events → Value trees (see internal/yaml_builder.h).

#include "value/internal/yaml_builder.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "value/internal/resolve.h"

namespace gantry::value::internal {
namespace {

constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";
using Type = Value::Type;

}  // namespace

YamlBuilder::YamlBuilder(std::string_view text, std::string_view filename,
                         const ParseOptions& options)
    : text_(text), filename_(filename), options_(options),
      max_document_bytes_(std::min(options.max_document_bytes, kMaxMarkedBytes)),
      file_(new SourceFile(filename)) {}

YamlBuilder::~YamlBuilder() {
  for (size_t i = 0; i < depth_; ++i) {
    Node::Unref(stack_[i].node);
    Node::Unref(stack_[i].key);
  }
  for (Node* n : items_) Node::Unref(n);
  for (RawEntry& e : entries_) {
    Node::Unref(e.key);
    Node::Unref(e.value);
  }
  SourceFile::Unref(file_);
}

std::string YamlBuilder::Where(YamlPos p) const {
  return fmt::format("{}:{}:{}", filename_, p.line, p.column);
}

bool YamlBuilder::StartDocument(YamlPos start) {
  if (++documents_ > options_.max_documents) {
    return Fail(ResourceExhaustedError("{}: too many documents (limit {})", Where(start),
                                       options_.max_documents));
  }
  doc_start_ = start.offset;
  // One arena per document, so keeping one document keeps only its memory. Its first chunk is
  // what the previous document used, and a little more (the documents of one stream tend to be
  // alike: a hundred ConfigMaps), or for the first one about 12 bytes of nodes per byte of text;
  // so a kept document holds little unused tail (a fixed 4 KiB chunk was 4 times what a small
  // object needs).
  size_t previous = file_->used;
  size_t first = previous > 0 ? previous + previous / 16 : text_.size() * 12;
  SourceFile::Unref(file_);
  file_ = new SourceFile(filename_);
  file_->base = start.offset;
  file_->next_chunk =
      std::clamp<size_t>((first + 7) & ~size_t{7}, 256, previous > 0 ? 256 * 1024 : 4096);
  anchors_.clear();
  alias_nodes_ = 0;
  root_ = Value();
  return true;
}

bool YamlBuilder::EndDocument(YamlPos end) {
  if (TooLarge(end)) return SizeError(end);
  if (!root_.IsNull()) docs_.push_back(std::move(root_));
  root_ = Value();
  return true;
}

bool YamlBuilder::SizeError(YamlPos end) {
  return Fail(ResourceExhaustedError("{}: document is larger than {} bytes (limit {})",
                                     Where(end), max_document_bytes_, max_document_bytes_));
}

bool YamlBuilder::Scalar(std::string_view text, bool plain, std::string_view tag,
                         std::string_view anchor, YamlPos start, YamlPos end) {
  if (TooLarge(end)) return SizeError(end);
  Node* n;
  if (tag.empty()) {
    if (plain && text.size() == 2 && text == "<<" && ExpectingKey()) {
      top().key_is_merge = top().have_key = true;
      return true;
    }
    n = plain ? NewNode(ResolvePlain(text), text, file_) : Str(text);
  } else if (!tag.starts_with(kTagPrefix)) {
    n = Str(text);  // "!" or an application tag: the text
  } else {
    std::string_view kind = tag.substr(kTagPrefix.size());
    if (kind == "merge" && ExpectingKey()) {
      top().key_is_merge = top().have_key = true;
      return true;
    }
    n = Tagged(kind, text, start);
    if (!n) return false;
  }
  return AddScalar(n, anchor, start, end);
}

bool YamlBuilder::Key(std::string_view text, bool plain, YamlPos start, YamlPos end) {
  if (TooLarge(end)) return SizeError(end);
  Frame& f = top();
  if (plain && text.size() == 2 && text == "<<") {
    f.key_is_merge = f.have_key = true;
    return true;
  }
  Node* n = plain ? NewNode(ResolvePlain(text), text, file_) : Str(text);
  n->SetMark(file_, start.line, start.column, start.offset, end.offset);
  ++f.count;  // and its height stays (a map is at least 1, a scalar 0)
  if (n->type != Type::kString && !(n = KeyString(n, start))) return false;
  f.key = n;
  f.have_key = true;
  return true;
}

bool YamlBuilder::AddScalar(Node* n, std::string_view anchor, YamlPos start, YamlPos end) {
  n->SetMark(file_, start.line, start.column, start.offset, end.offset);
  if (!anchor.empty()) anchors_[std::string(anchor)] = Anchor{Node::Wrap(Node::Ref(n)), 1, 0};
  return Add(n, 1, 0, start);
}

Node* YamlBuilder::Tagged(std::string_view kind, std::string_view text, YamlPos at) {
  if (kind == "str" || kind == "binary" || kind == "timestamp") return Str(text);
  Resolved r = ResolvePlain(text);
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
    Fail(InvalidArgumentError("{}: cannot read \"{}\" as !!{}", Where(at), text, kind));
    return nullptr;
  }
  return NewNode(r, text, file_);
}

bool YamlBuilder::Alias(std::string_view name, YamlPos start) {
  auto it = anchors_.find(std::string(name));
  if (it == anchors_.end()) {
    return Fail(InvalidArgumentError(
        "{}: unknown anchor \"{}\" (or an alias inside its own anchor)", Where(start), name));
  }
  const Anchor& a = it->second;
  alias_nodes_ += a.count;
  if (alias_nodes_ > options_.max_alias_nodes) {
    return Fail(ResourceExhaustedError("{}: aliases expand to more than {} nodes (limit {})",
                                       Where(start), options_.max_alias_nodes,
                                       options_.max_alias_nodes));
  }
  if (depth_ + a.height > options_.max_depth) {
    return Fail(ResourceExhaustedError("{}: alias \"{}\" nests deeper than {} levels (limit {})",
                                       Where(start), name, options_.max_depth,
                                       options_.max_depth));
  }
  return Add(Node::Ref(Node::Get(a.value)), a.count, a.height, start);
}

bool YamlBuilder::StartCollection(bool is_map, std::string_view anchor, YamlPos start,
                                    YamlPos end) {
  if (TooLarge(end)) return SizeError(end);
  if (depth_ + 1 > options_.max_depth) {
    return Fail(ResourceExhaustedError("{}: nesting deeper than {} levels (limit {})",
                                       Where(start), options_.max_depth, options_.max_depth));
  }
  if (ExpectingKey()) {
    return Fail(InvalidArgumentError("{}: a {} cannot be a map key", Where(start),
                                     is_map ? "map" : "sequence"));
  }
  Node* n = is_map ? static_cast<Node*>(New<MapNode>(file_)) : New<SeqNode>(file_);
  n->SetMark(file_, start.line, start.column, start.offset, end.offset);
  if (depth_ == stack_.size()) stack_.emplace_back();
  Frame& f = stack_[depth_++];
  f.node = n;
  f.is_map = is_map;
  f.first = is_map ? entries_.size() : items_.size();
  f.have_key = f.key_is_merge = false;
  f.key = nullptr;
  f.anchor.assign(anchor);
  f.count = f.height = 1;
  f.from_merge.clear();
  f.index.reset();
  return true;
}

bool YamlBuilder::EndCollection(YamlPos start, YamlPos end) {
  Frame& f = top();
  Node* n = f.node;
  f.node = nullptr;
  n->SetEnd(end.offset);
  if (f.is_map) {
    auto* m = static_cast<MapNode*>(n);
    m->entries.AdoptIn(file_, entries_.data() + f.first, entries_.size() - f.first);
    entries_.resize(f.first);
    if (m->entries.size() > MapNode::kIndexThreshold) m->RebuildIndex();
    f.index.reset();
  } else {
    auto* s = static_cast<SeqNode*>(n);
    s->items.AdoptIn(file_, items_.data() + f.first, items_.size() - f.first);
    items_.resize(f.first);
  }
  uint64_t count = f.count;
  uint32_t height = f.height;
  if (!f.anchor.empty()) anchors_[f.anchor] = Anchor{Node::Wrap(Node::Ref(n)), count, height};
  --depth_;
  return Add(n, count, height, start);
}

// Converts a resolved key to the string Kubernetes would use.
Node* YamlBuilder::KeyString(Node* k, YamlPos at) {
  Value key = Node::Wrap(k);
  std::string s;
  switch (key.type()) {
    case Type::kBool:
      s = key.AsBool() ? "true" : "false";
      break;
    case Type::kInt:
      s = std::to_string(key.AsInt());
      break;
    case Type::kDouble: {
      double d = key.AsDouble();
      if (std::isnan(d) || std::isinf(d)) {
        AppendDouble(s, d, /*yaml=*/true);
      } else {
        char buf[64];
        auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<float>(d));
        s.assign(buf, ptr);
      }
      break;
    }
    case Type::kNull:
      Fail(InvalidArgumentError("{}: null map key", Where(at)));
      return nullptr;
    default:
      Fail(InvalidArgumentError("{}: a map or sequence cannot be a map key", Where(at)));
      return nullptr;
  }
  Node* out = Str(s);
  out->SetMark(file_, k->line, k->column, k->Begin(), k->End());
  return out;
}

// Adds a finished node to the open container, or makes it the document root.
bool YamlBuilder::Add(Node* n, uint64_t count, uint32_t height, YamlPos at) {
  if (depth_ == 0) {
    root_ = Node::Wrap(n);
    return true;
  }
  Frame& f = top();
  f.count += count;
  f.height = std::max(f.height, height + 1);
  if (!f.is_map) {
    items_.push_back(n);
    return true;
  }
  if (!f.have_key) {
    if (n->type != Type::kString) {
      n = KeyString(n, at);
      if (!n) return false;
    }
    f.key = n;
    f.have_key = true;
    return true;
  }
  f.have_key = false;
  if (f.key_is_merge) {
    f.key_is_merge = false;
    Status merged = Merge(f, Node::Wrap(n), at);
    return merged.ok() || Fail(std::move(merged));
  }
  Node* key_node = f.key;
  f.key = nullptr;
  std::string_view key = static_cast<StringNode*>(key_node)->view();
  ptrdiff_t pos = FindEntry(f, key);
  if (pos < 0) {
    if (!f.from_merge.empty()) f.from_merge.push_back(false);
    AppendEntry(f, key_node, n);
    return true;
  }
  auto p = static_cast<size_t>(pos);
  RawEntry& e = entries_[f.first + p];
  if (p < f.from_merge.size() && f.from_merge[p]) {
    RawEntry merged = e;
    e = RawEntry{key_node, n};
    if (f.index) {  // its view of the key was the merged entry's text
      f.index->erase(key);
      f.index->emplace(key, p);
    }
    Node::Unref(merged.key);
    Node::Unref(merged.value);
    f.from_merge[p] = false;
    return true;
  }
  Fail(InvalidArgumentError("{}:{}:{}: duplicate key \"{}\" (first at line {} column {})",
                            filename_, key_node->line, key_node->column, key, e.key->line,
                            e.key->column));
  Node::Unref(key_node);
  Node::Unref(n);
  return false;
}

// Position of `key` among the entries of map frame f, or -1.
ptrdiff_t YamlBuilder::FindEntry(const Frame& f, std::string_view key) const {
  if (f.index) {
    auto it = f.index->find(key);
    return it == f.index->end() ? -1 : static_cast<ptrdiff_t>(it->second);
  }
  for (size_t i = f.first; i < entries_.size(); ++i) {
    // Key bytes end with a NUL, so the first byte can be compared before memcmp even when empty.
    std::string_view k = static_cast<StringNode*>(entries_[i].key)->view();
    if (k.size() == key.size() && k.data()[0] == key.data()[0] &&
        std::memcmp(k.data(), key.data(), k.size()) == 0) {
      return static_cast<ptrdiff_t>(i - f.first);
    }
  }
  return -1;
}

void YamlBuilder::AppendEntry(Frame& f, Node* key, Node* value) {
  entries_.push_back(RawEntry{key, value});
  size_t n = entries_.size() - f.first;
  auto key_of = [](const RawEntry& e) { return static_cast<StringNode*>(e.key)->view(); };
  if (f.index) {
    f.index->emplace(key_of(entries_.back()), n - 1);
  } else if (n > MapNode::kIndexThreshold) {
    f.index = std::make_unique<std::unordered_map<std::string_view, size_t>>();
    for (size_t i = f.first; i < entries_.size(); ++i) {
      f.index->emplace(key_of(entries_[i]), i - f.first);
    }
  }
}

Status YamlBuilder::MergeOne(Frame& f, const Value& src, YamlPos at) {
  if (!src.IsMap()) {
    return InvalidArgumentError("{}: merge key << needs a map or a sequence of maps", Where(at));
  }
  size_t n = entries_.size() - f.first;
  if (f.from_merge.size() < n) f.from_merge.resize(n, false);
  for (const MapEntry& e : src.entries()) {
    if (FindEntry(f, KeyOf(e)) >= 0) continue;  // explicit keys and earlier merges win
    AppendEntry(f, Node::Ref(Node::Get(e.key)), Node::Ref(Node::Get(e.value)));
    f.from_merge.push_back(true);
  }
  return OkStatus();
}

Status YamlBuilder::Merge(Frame& f, const Value& v, YamlPos at) {
  if (v.IsSeq()) {
    for (const Value& item : v.items()) GANTRY_RETURN_IF_ERROR(MergeOne(f, item, at));
    return OkStatus();
  }
  return MergeOne(f, v, at);
}

}  // namespace gantry::value::internal
