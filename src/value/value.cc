#include "value/value.h"

#include <cmath>
#include <functional>
#include <unordered_map>

#include "base/mutex.h"
#include "value/internal/node.h"

namespace gantry::value {

using internal::MapNode;
using internal::Node;
using internal::ScalarNode;
using internal::SeqNode;
using internal::SourceFile;
using internal::StringNode;

namespace internal {

namespace {

// The file references of destroyed arena nodes, given back with one atomic subtraction for each
// run of nodes from the same file (a whole document, usually) instead of one per node.
class FileRelease {
 public:
  FileRelease() = default;
  FileRelease(const FileRelease&) = delete;
  FileRelease& operator=(const FileRelease&) = delete;
  ~FileRelease() { Flush(); }
  void Add(SourceFile* f) {
    if (f != file_) {
      Flush();
      file_ = f;
    }
    ++count_;
  }

 private:
  void Flush() {
    if (count_ > 0) SourceFile::Unref(file_, count_);
    count_ = 0;
  }
  SourceFile* file_ = nullptr;
  uint64_t count_ = 0;
};

// Drops one reference; true when it was the last. A count of 1 is the caller's own reference, which
// no other thread can copy meanwhile, so the common case needs no atomic read-modify-write.
bool DropRef(Node* n) {
  return n->refs.load(std::memory_order_acquire) == 1 ||
         n->refs.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

void Destroy(Node* n, FileRelease* release);

void Drop(Value& v, FileRelease* release) {
  Node* n = Node::Release(v);
  if (!n || !DropRef(n)) return;
  if (n->in_arena && n->type <= Value::Type::kString) {
    release->Add(n->file);  // a scalar in an arena: nothing to run, nothing to free
    return;
  }
  Destroy(n, release);
}

void Destroy(Node* n, FileRelease* release) {
  SourceFile* file = n->file;
  bool in_arena = n->in_arena;
  switch (n->type) {
    case Value::Type::kString:
      static_cast<StringNode*>(n)->~StringNode();
      break;
    case Value::Type::kSeq: {
      auto* s = static_cast<SeqNode*>(n);
      for (Value& item : s->items) Drop(item, release);
      s->items.ForgetAll();  // all null now
      s->~SeqNode();
      break;
    }
    case Value::Type::kMap: {
      auto* m = static_cast<MapNode*>(n);
      for (MapEntry& e : m->entries) {
        Drop(e.key, release);
        Drop(e.value, release);
      }
      m->entries.ForgetAll();
      m->~MapNode();
      break;
    }
    default:
      static_cast<ScalarNode*>(n)->~ScalarNode();
      break;
  }
  if (!in_arena) ::operator delete(n);
  if (file) release->Add(file);
}

}  // namespace

void Node::Unref(Node* n) {
  if (!n || !DropRef(n)) return;
  FileRelease release;
  Destroy(n, &release);
}

namespace {
size_t HashKey(std::string_view k) { return std::hash<std::string_view>{}(k); }
}  // namespace

ptrdiff_t MapNode::Find(std::string_view key) const {
  if (index.empty()) {
    for (size_t i = 0; i < entries.size(); ++i) {
      if (KeyOf(entries[i]) == key) return static_cast<ptrdiff_t>(i);
    }
    return -1;
  }
  size_t mask = index.size() - 1;
  for (size_t slot = HashKey(key) & mask;; slot = (slot + 1) & mask) {
    uint32_t pos = index[slot];
    if (pos == 0) return -1;
    if (KeyOf(entries[pos - 1]) == key) return static_cast<ptrdiff_t>(pos - 1);
  }
}

void MapNode::RebuildIndex() {
  index.clear();
  if (entries.size() <= kIndexThreshold) return;
  size_t cap = 64;
  while (cap < entries.size() * 2) cap *= 2;
  index.assign(cap, 0);
  size_t mask = cap - 1;
  for (size_t i = 0; i < entries.size(); ++i) {
    size_t slot = HashKey(KeyOf(entries[i])) & mask;
    while (index[slot] != 0) slot = (slot + 1) & mask;
    index[slot] = static_cast<uint32_t>(i + 1);
  }
}

void MapNode::AppendNew(Value key, Value value) {
  entries.push_back(MapEntry{std::move(key), std::move(value)});
  if (entries.size() <= kIndexThreshold) return;
  if (index.empty() || entries.size() * 2 > index.size()) {
    RebuildIndex();
    return;
  }
  size_t mask = index.size() - 1;
  size_t slot = HashKey(KeyOf(entries.back())) & mask;
  while (index[slot] != 0) slot = (slot + 1) & mask;
  index[slot] = static_cast<uint32_t>(entries.size());
}

}  // namespace internal

namespace {

ScalarNode* NewScalar(Value::Type t) { return internal::New<ScalarNode>(nullptr, t); }

const ScalarNode* AsScalar(const Node* n) { return static_cast<const ScalarNode*>(n); }

}  // namespace

Value::Value(bool b) {
  auto* n = NewScalar(Type::kBool);
  n->b = b;
  node_ = n;
}

Value::Value(int64_t i) {
  auto* n = NewScalar(Type::kInt);
  n->i = i;
  node_ = n;
}

Value::Value(double d) {
  auto* n = NewScalar(Type::kDouble);
  n->d = d;
  node_ = n;
}

Value::Value(std::string_view s) : node_(StringNode::Make(s)) {}

Value Value::Map() { return Value(internal::New<MapNode>(nullptr)); }
Value Value::Seq() { return Value(internal::New<SeqNode>(nullptr)); }

Value::Value(const Value& other) : node_(Node::Ref(other.node_)) {}

Value& Value::operator=(const Value& other) {
  Node* old = node_;
  node_ = Node::Ref(other.node_);
  Node::Unref(old);
  return *this;
}

Value& Value::operator=(Value&& other) noexcept {
  if (this != &other) {
    Node::Unref(node_);
    node_ = other.node_;
    other.node_ = nullptr;
  }
  return *this;
}

Value::~Value() { Node::Unref(node_); }

Value::Type Value::type() const { return node_ ? node_->type : Type::kNull; }

bool Value::AsBool() const {
  GANTRY_CHECK(IsBool());
  return AsScalar(node_)->b;
}

int64_t Value::AsInt() const {
  GANTRY_CHECK(IsInt());
  return AsScalar(node_)->i;
}

double Value::AsDouble() const {
  GANTRY_CHECK(IsNumber());
  return IsInt() ? static_cast<double>(AsScalar(node_)->i) : AsScalar(node_)->d;
}

std::string_view Value::AsString() const {
  GANTRY_CHECK(IsString());
  return static_cast<StringNode*>(node_)->view();
}

size_t Value::size() const {
  switch (type()) {
    case Type::kSeq:
      return static_cast<SeqNode*>(node_)->items.size();
    case Type::kMap:
      return static_cast<MapNode*>(node_)->entries.size();
    default:
      return 0;
  }
}

std::span<const MapEntry> Value::entries() const {
  if (!IsMap()) return {};
  return static_cast<MapNode*>(node_)->entries;
}

std::span<const Value> Value::items() const {
  if (!IsSeq()) return {};
  return static_cast<SeqNode*>(node_)->items;
}

const Value* Value::Get(std::string_view key) const {
  if (!IsMap()) return nullptr;
  auto* m = static_cast<MapNode*>(node_);
  ptrdiff_t pos = m->Find(key);
  return pos < 0 ? nullptr : &m->entries[static_cast<size_t>(pos)].value;
}

const Value* Value::At(size_t i) const {
  if (!IsSeq()) return nullptr;
  auto* s = static_cast<SeqNode*>(node_);
  return i < s->items.size() ? &s->items[i] : nullptr;
}

const Value* Value::Find(std::initializer_list<PathElem> path) const {
  const Value* v = this;
  for (const PathElem& e : path) {
    v = e.is_index ? v->At(e.index) : v->Get(e.key);
    if (!v) return nullptr;
  }
  return v;
}

std::string StringAt(const Value* v, std::initializer_list<Value::PathElem> path) {
  const Value* f = v ? v->Find(path) : nullptr;
  return f && f->IsString() ? std::string(f->AsString()) : std::string();
}

int64_t IntAt(const Value* v, std::initializer_list<Value::PathElem> path) {
  const Value* f = v ? v->Find(path) : nullptr;
  return f && f->IsInt() ? f->AsInt() : 0;
}

bool BoolAt(const Value* v, std::initializer_list<Value::PathElem> path) {
  const Value* f = v ? v->Find(path) : nullptr;
  return f && f->IsBool() && f->AsBool();
}

Node* Value::Unshare() {
  if (node_->refs.load(std::memory_order_acquire) == 1) return node_;
  Node* copy = nullptr;
  switch (node_->type) {
    case Type::kSeq:
      copy = internal::New<SeqNode>(nullptr, *static_cast<SeqNode*>(node_));
      break;
    case Type::kMap:
      copy = internal::New<MapNode>(nullptr, *static_cast<MapNode*>(node_));
      break;
    default:
      GANTRY_CHECK(false && "Unshare of a scalar");
  }
  copy->refs.store(1, std::memory_order_relaxed);
  Node::Unref(node_);
  node_ = copy;
  return copy;
}

void Value::Set(std::string_view key, Value v) {
  if (IsNull()) *this = Map();
  GANTRY_CHECK(IsMap());
  auto* m = static_cast<MapNode*>(Unshare());
  ptrdiff_t pos = m->Find(key);
  if (pos >= 0) {
    m->entries[static_cast<size_t>(pos)].value = std::move(v);
  } else {
    m->AppendNew(Value(key), std::move(v));
  }
}

bool Value::Erase(std::string_view key) {
  if (IsNull()) return false;
  GANTRY_CHECK(IsMap());
  if (static_cast<MapNode*>(node_)->Find(key) < 0) return false;
  auto* m = static_cast<MapNode*>(Unshare());
  m->entries.erase(m->entries.begin() + m->Find(key));
  m->RebuildIndex();
  return true;
}

void Value::Append(Value v) {
  if (IsNull()) *this = Seq();
  GANTRY_CHECK(IsSeq());
  static_cast<SeqNode*>(Unshare())->items.push_back(std::move(v));
}

Value* Value::MutableGet(std::string_view key) {
  if (!IsMap() || static_cast<MapNode*>(node_)->Find(key) < 0) return nullptr;
  auto* m = static_cast<MapNode*>(Unshare());
  return &m->entries[static_cast<size_t>(m->Find(key))].value;
}

Value* Value::MutableAt(size_t i) {
  if (!IsSeq() || i >= size()) return nullptr;
  return &static_cast<SeqNode*>(Unshare())->items[i];
}

Mark Value::mark() const {
  Mark m;
  if (!node_) return m;
  if (node_->file) m.file = node_->file->name;
  m.line = node_->line;
  m.column = node_->column;
  m.begin = node_->Begin();
  m.end = node_->End();
  return m;
}

bool operator==(const Value& a, const Value& b) {
  if (a.node_ == b.node_) return true;
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::kNull:
      return true;
    case Value::Type::kBool:
      return a.AsBool() == b.AsBool();
    case Value::Type::kInt:
      return a.AsInt() == b.AsInt();
    case Value::Type::kDouble: {
      double x = a.AsDouble(), y = b.AsDouble();
      return x == y || (std::isnan(x) && std::isnan(y));
    }
    case Value::Type::kString:
      return a.AsString() == b.AsString();
    case Value::Type::kSeq: {
      auto x = a.items(), y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!(x[i] == y[i])) return false;
      }
      return true;
    }
    case Value::Type::kMap: {
      if (a.size() != b.size()) return false;
      auto x = a.entries(), y = b.entries();
      for (size_t i = 0; i < x.size(); ++i) {
        // Same order is the common case; fall back to lookup.
        const Value* other = internal::KeyOf(x[i]) == internal::KeyOf(y[i])
                                 ? &y[i].value
                                 : b.Get(internal::KeyOf(x[i]));
        if (!other || !(x[i].value == *other)) return false;
      }
      return true;
    }
  }
  return false;
}

namespace {

constexpr size_t Round8(size_t n) { return (n + 7) & ~size_t{7}; }

// Bytes Detach allocates in its arena for `v` (as SourceFile::Allocate rounds them); map keys
// count unless they come from a pool.
size_t DetachedSize(const Value& v, bool pooled_keys) {
  switch (v.type()) {
    case Value::Type::kNull:
      return 0;
    case Value::Type::kBool:
    case Value::Type::kInt:
    case Value::Type::kDouble:
      return Round8(sizeof(ScalarNode));
    case Value::Type::kString:
      return Round8(sizeof(StringNode) + v.AsString().size() + 1);
    case Value::Type::kSeq: {
      size_t n = Round8(sizeof(SeqNode)) + Round8(v.size() * sizeof(Value));
      for (const Value& item : v.items()) n += DetachedSize(item, pooled_keys);
      return n;
    }
    case Value::Type::kMap: {
      size_t n = Round8(sizeof(MapNode)) + Round8(v.size() * sizeof(MapEntry));
      for (const MapEntry& e : v.entries()) {
        n += (pooled_keys ? 0 : DetachedSize(e.key, false)) + DetachedSize(e.value, pooled_keys);
      }
      return n;
    }
  }
  return 0;
}

}  // namespace

struct KeyPool::Impl {
  Mutex mu;
  // Views into the keys' own bytes, which the pooled Values keep alive.
  std::unordered_map<std::string_view, Value> keys GUARDED_BY(mu);
  size_t prune_at GUARDED_BY(mu) = 1024;

  // The pooled key equal to `key`.
  Value Get(std::string_view key) REQUIRES(mu) {
    auto it = keys.find(key);
    if (it != keys.end()) return it->second;
    if (keys.size() >= prune_at) {
      Prune();
      prune_at = std::max<size_t>(1024, keys.size() * 2);
    }
    Value v = Node::Wrap(StringNode::Make(key));
    keys.emplace(internal::StringOf(v), v);
    return v;
  }
  // Drops the keys only the pool holds.
  void Prune() REQUIRES(mu) {
    for (auto it = keys.begin(); it != keys.end();) {
      if (Node::Get(it->second)->refs.load(std::memory_order_acquire) == 1) {
        it = keys.erase(it);
      } else {
        ++it;
      }
    }
  }
};

KeyPool::KeyPool() : impl_(new Impl) {}
KeyPool::~KeyPool() { delete impl_; }
size_t KeyPool::size() const {
  MutexLock lock(impl_->mu);
  return impl_->keys.size();
}

namespace {

// `keys` is locked by the caller when given.
Value DetachInto(const Value& v, SourceFile* arena, KeyPool::Impl* keys) {
  switch (v.type()) {
    case Value::Type::kNull:
      return Value();
    case Value::Type::kBool:
    case Value::Type::kInt:
    case Value::Type::kDouble: {
      auto* n = internal::New<ScalarNode>(arena, v.type());
      if (v.IsBool()) n->b = v.AsBool();
      if (v.IsInt()) n->i = v.AsInt();
      if (v.IsDouble()) n->d = v.AsDouble();
      return Node::Wrap(n);
    }
    case Value::Type::kString:
      return Node::Wrap(StringNode::Make(v.AsString(), arena));
    case Value::Type::kSeq: {
      auto* n = internal::New<SeqNode>(arena);
      n->items.AllocateIn(arena, v.size());
      for (const Value& item : v.items()) n->items.push_back(DetachInto(item, arena, keys));
      return Node::Wrap(n);
    }
    case Value::Type::kMap: {
      auto* n = internal::New<MapNode>(arena);
      n->entries.AllocateIn(arena, v.size());
      for (const MapEntry& e : v.entries()) {
        Value key;
        if (keys) {
          keys->mu.AssertHeld();  // as said above; the analysis cannot follow "locked when given"
          key = keys->Get(e.key.AsString());
        } else {
          key = DetachInto(e.key, arena, nullptr);
        }
        n->entries.push_back(MapEntry{std::move(key), DetachInto(e.value, arena, keys)});
      }
      n->RebuildIndex();
      return Node::Wrap(n);
    }
  }
  return Value();
}

}  // namespace

Value Detach(const Value& v, KeyPool* keys) {
  size_t bytes = DetachedSize(v, keys != nullptr);
  if (bytes == 0) return Value();
  auto* arena = new SourceFile("");
  arena->next_chunk = bytes;  // one block for the whole copy
  Value out;
  if (keys) {
    MutexLock lock(keys->impl_->mu);
    out = DetachInto(v, arena, keys->impl_);
  } else {
    out = DetachInto(v, arena, nullptr);
  }
  SourceFile::Unref(arena);  // the nodes hold it now
  return out;
}

std::string_view TypeName(const Value& v) {
  switch (v.type()) {
    case Value::Type::kNull: return "null";
    case Value::Type::kBool: return "a boolean";
    case Value::Type::kInt: return "an integer";
    case Value::Type::kDouble: return "a number";
    case Value::Type::kString: return "a string";
    case Value::Type::kSeq: return "a list";
    case Value::Type::kMap: return "a map";
  }
  return "a value";
}

}  // namespace gantry::value
