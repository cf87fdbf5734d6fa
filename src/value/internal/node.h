#pragma once
// Node layout behind gantry::value::Value. Private to src/value.
//
// Every non-null Value (and every parsed null) points to one heap Node with an atomic reference
// count. Strings keep their bytes right after the node header (one allocation). Maps keep entries
// in a vector plus, past kIndexThreshold entries, an open-addressing hash index of entry positions.

#include <atomic>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <new>
#include <span>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "value/value.h"

namespace gantry::value::internal {

// The name of a parsed file and the arena that holds the nodes of one parsed document. Every node
// that names the file holds a reference; arena memory is released with the last of them (nodes
// are never freed one by one inside it). Bump allocation keeps parsing off malloc's slow paths.
struct SourceFile {
  explicit SourceFile(std::string_view n) : name(n) {}
  SourceFile(const SourceFile&) = delete;
  SourceFile& operator=(const SourceFile&) = delete;
  ~SourceFile() {
    for (void* c : chunks) ::operator delete(c);
  }

  std::atomic<uint64_t> refs{1};
  std::string name;
  size_t base = 0;  // byte offset of the text that its nodes' marks count from (a document's start)
  std::vector<void*> chunks;
  char* cur = nullptr;
  char* end = nullptr;
  size_t next_chunk = 4096;  // the parser may set the first one from what it expects to need
  size_t used = 0;           // bytes handed out

  void* Allocate(size_t n) {
    n = (n + 7) & ~size_t{7};
    used += n;
    if (static_cast<size_t>(end - cur) < n) [[unlikely]] NewChunk(n);
    void* p = cur;
    cur += n;
    return p;
  }
  [[gnu::noinline]] void NewChunk(size_t n) {
    size_t size = std::max(next_chunk, n);
    next_chunk = std::min<size_t>(next_chunk * 2, 256 * 1024);
    cur = static_cast<char*>(::operator new(size));
    end = cur + size;
    chunks.push_back(cur);
  }

  static SourceFile* Ref(SourceFile* f) {
    if (f) f->refs.fetch_add(1, std::memory_order_relaxed);
    return f;
  }
  // Ref for the one thread that is filling a new arena: every parser builds a document's nodes in
  // an arena no other thread can see until the parse returns, so no atomic add is needed (one per
  // node was a measurable part of parsing).
  static SourceFile* RefPrivate(SourceFile* f) {
    f->refs.store(f->refs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return f;
  }
  static void Unref(SourceFile* f, uint64_t count = 1) {
    if (f && f->refs.fetch_sub(count, std::memory_order_acq_rel) == count) delete f;
  }
};

// The largest byte distance between a mark and its file's base that a node can hold: a YAML
// document (and a JSON text, which simdjson caps at 4 GiB anyway) larger than this is refused
// whatever ParseOptions::max_document_bytes says.
inline constexpr size_t kMaxMarkedBytes = UINT32_MAX;

// 32 bytes: marks are offsets from their file's base, so the common header fits half a cache line.
struct Node {
  std::atomic<uint32_t> refs{1};
  Value::Type type;
  bool in_arena = false;  // memory belongs to *file's arena
  uint32_t line = 0;
  uint32_t column = 0;
  uint32_t begin = 0;  // [begin, end) of the source text, from file->base
  uint32_t end = 0;
  SourceFile* file = nullptr;

  explicit Node(Value::Type t) : type(t) {}
  Node(const Node& o)
      : refs(1), type(o.type), line(o.line), column(o.column), begin(o.begin), end(o.end),
        file(SourceFile::Ref(o.file)) {}
  ~Node() = default;  // Unref releases `file`

  // `b` and `e` are offsets in the parsed text, at most kMaxMarkedBytes past f->base.
  void SetMark(SourceFile* f, uint32_t l, uint32_t c, size_t b, size_t e) {
    if (!file) file = SourceFile::Ref(f);
    line = l;
    column = c;
    begin = static_cast<uint32_t>(b - file->base);
    end = static_cast<uint32_t>(e - file->base);
  }
  void SetEnd(size_t e) { end = static_cast<uint32_t>(e - file->base); }
  size_t Begin() const { return file ? file->base + begin : begin; }
  size_t End() const { return file ? file->base + end : end; }

  static Node* Ref(Node* n) {
    if (n) n->refs.fetch_add(1, std::memory_order_relaxed);
    return n;
  }
  static void Unref(Node* n);

  static Value Wrap(Node* adopted) { return Value(adopted); }
  static Node* Get(const Value& v) { return v.node_; }
  static Node* Release(Value& v) {
    Node* n = v.node_;
    v.node_ = nullptr;
    return n;
  }
};
static_assert(sizeof(Node) == 32);

struct ScalarNode : Node {
  explicit ScalarNode(Value::Type t) : Node(t) {}
  union {
    bool b;
    int64_t i;
    double d;
  };
};

struct StringNode : Node {
  StringNode() : Node(Value::Type::kString) {}
  size_t size = 0;
  char* data() { return reinterpret_cast<char*>(this + 1); }
  std::string_view view() { return {data(), size}; }

  // In `arena` when given (the node then holds a reference on it; an arena being filled by this
  // thread, see RefPrivate), else on the heap.
  static StringNode* Make(std::string_view s, SourceFile* arena = nullptr) {
    size_t bytes = sizeof(StringNode) + s.size() + 1;
    void* mem = arena ? arena->Allocate(bytes) : ::operator new(bytes);
    auto* n = new (mem) StringNode();
    if (arena) n->file = SourceFile::RefPrivate(arena), n->in_arena = true;
    n->size = s.size();
    Copy(n->data(), s.data(), s.size());
    n->data()[s.size()] = '\0';
    return n;
  }

 private:
  // memcpy, inline for the short keys and values most nodes hold (two overlapping moves of a
  // fixed size instead of a call).
  static void Copy(char* to, const char* from, size_t n) {
    if (n >= 8 && n <= 16) {
      std::memcpy(to, from, 8);
      std::memcpy(to + n - 8, from + n - 8, 8);
    } else if (n >= 4 && n < 8) {
      std::memcpy(to, from, 4);
      std::memcpy(to + n - 4, from + n - 4, 4);
    } else if (n < 4) {
      for (size_t i = 0; i < n; ++i) to[i] = from[i];
    } else {
      std::memcpy(to, from, n);
    }
  }
};

// The items of a sequence or the entries of a map: an array in the document's arena (sized
// exactly by the parser, which builds it once) or on the heap. Growing an arena array copies it to
// the heap; arena memory is never freed on its own (the arena goes as a whole).
template <typename T>
class NodeVec {
 public:
  NodeVec() = default;
  NodeVec(const NodeVec& o) {
    reserve(o.size_);
    for (const T& x : o) new (data_ + size_++) T(x);
  }
  NodeVec& operator=(const NodeVec&) = delete;
  ~NodeVec() {
    clear();
    if (heap_) ::operator delete(data_);
  }

  // Storage for `n` elements in `arena`, to be filled with push_back.
  void AllocateIn(SourceFile* arena, size_t n) {
    GANTRY_CHECK(size_ == 0 && !heap_ && n <= kMaxSize);
    data_ = n ? static_cast<T*>(arena->Allocate(n * sizeof(T))) : nullptr;
    cap_ = static_cast<uint32_t>(n);
  }

  // Storage for `n` elements in `arena`, filled with the bytes at `src`: the elements move
  // there as they are (each is one pointer, so moving one is copying it), and the caller forgets
  // them.
  void AdoptIn(SourceFile* arena, const void* src, size_t n) {
    AllocateIn(arena, n);
    if (n) std::memcpy(static_cast<void*>(data_), src, n * sizeof(T));
    size_ = static_cast<uint32_t>(n);
  }
  // Forgets every element without destroying it (each was already released: Value is null
  // after a move or a release).
  void ForgetAll() { size_ = 0; }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T& back() { return data_[size_ - 1]; }
  operator std::span<const T>() const { return {data_, size_}; }  // NOLINT: like std::vector

  void push_back(T&& x) {
    if (size_ == cap_) reserve(size_ < 4 ? 4 : size_ * size_t{2});
    new (data_ + size_++) T(std::move(x));
  }
  void reserve(size_t n) {
    if (n <= cap_) return;
    GANTRY_CHECK(n <= kMaxSize);
    T* grown = static_cast<T*>(::operator new(n * sizeof(T)));
    for (uint32_t i = 0; i < size_; ++i) {
      new (grown + i) T(std::move(data_[i]));
      data_[i].~T();
    }
    if (heap_) ::operator delete(data_);
    data_ = grown;
    cap_ = static_cast<uint32_t>(n);
    heap_ = true;
  }
  void erase(T* pos) {
    std::move(pos + 1, end(), pos);
    data_[--size_].~T();
  }
  void clear() {
    for (uint32_t i = 0; i < size_; ++i) data_[i].~T();
    size_ = 0;
  }

 private:
  static constexpr size_t kMaxSize = (size_t{1} << 31) - 1;
  T* data_ = nullptr;
  uint32_t size_ = 0;
  uint32_t cap_ : 31 = 0;
  uint32_t heap_ : 1 = 0;
};

static_assert(sizeof(Value) == sizeof(Node*) && sizeof(MapEntry) == 2 * sizeof(Node*),
              "NodeVec::AdoptIn copies Values and MapEntries as raw pointers");

struct SeqNode : Node {
  SeqNode() : Node(Value::Type::kSeq) {}
  NodeVec<Value> items;
};

struct MapNode : Node {
  static constexpr size_t kIndexThreshold = 16;
  MapNode() : Node(Value::Type::kMap) {}
  NodeVec<MapEntry> entries;
  std::vector<uint32_t> index;  // slots hold entry position + 1; 0 is empty; size a power of two

  // Position of `key` in entries, or -1.
  ptrdiff_t Find(std::string_view key) const;
  // Appends an entry whose key is not present yet and keeps the index up to date.
  void AppendNew(Value key, Value value);
  void RebuildIndex();
};

// A node of type T in `arena` when given (an arena being filled by this thread: RefPrivate), else
// on the heap.
template <typename T, typename... Args>
T* New(SourceFile* arena, Args&&... args) {
  void* mem = arena ? arena->Allocate(sizeof(T)) : ::operator new(sizeof(T));
  T* n = new (mem) T(std::forward<Args>(args)...);
  if (arena) n->file = SourceFile::RefPrivate(arena), n->in_arena = true;
  return n;
}

inline std::string_view StringOf(const Value& v) {
  return static_cast<StringNode*>(Node::Get(v))->view();
}
inline std::string_view KeyOf(const MapEntry& e) { return StringOf(e.key); }

}  // namespace gantry::value::internal
