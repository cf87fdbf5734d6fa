#pragma once
// The document model of Gantry: one in-memory tree for Kubernetes objects read from YAML or JSON.
//
// A Value is a null, bool, int64, double, string, sequence or map (insertion-ordered, string keys).
// It is one pointer wide: nodes are immutable once shared and reference counted (atomically), so
// copying a Value is O(1) and copies may be read from any number of threads at once. Editing
// (Set, Erase, Append, Mutable*) is copy-on-write: a node shared with another Value is cloned
// shallowly before the change, so no other copy ever sees it. A single Value object must not be
// edited by one thread while another thread reads or edits that same object (the usual rule for
// values such as std::string). Parsed nodes live in one arena per document (bump-allocated, one
// malloc-free parse); the arena is released when the last node of that document is gone, so
// keeping any node of a document keeps that document's memory.
//
// Every node parsed from YAML carries a Mark: file, 1-based line and column (in characters) and
// the byte range [begin, end) of its source text (for a scalar, its exact text including quotes or
// block indicators), so the manifest-rewriting code can patch bytes in place.
//
// ParseYaml reads YAML 1.1 with Gantry's own one-pass scanner (src/value/yaml_fast.cc), which
// takes the YAML that manifests are written in; a stream holding anything it leaves (directives,
// complex keys, multi-line plain scalars in flow collections, ... see docs/architecture.md) or any
// error is parsed again with libyaml's event parser, so results, marks and error messages are
// libyaml's either way. Nesting is bounded (the scanner recurses at most 64 levels, libyaml's path
// is iterative), so hostile nesting cannot overflow the stack. Scalars resolve the way Kubernetes
// does (sigs.k8s.io/yaml, which uses go-yaml v2):
//   - Quoted ('..', "..") and block (|, >) scalars are always strings.
//   - Untagged plain scalars: "", ~, null, Null, NULL → null;
//     y Y yes Yes YES true True TRUE on On ON → true; n N no No NO false False FALSE off Off OFF →
//     false; .inf .Inf .INF +.inf... → +inf, -.inf... → -inf, .nan .NaN .NAN → NaN;
//     a string starting with a digit, '+' or '-' is, after removing every '_', an int when it
//     parses as a Go integer literal (decimal, 0x hex, 0o or leading-0 octal, 0b binary, optional
//     sign) that fits int64; a double when it is a larger integer or matches
//     [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? (so "08" is 8.0); a string starting with
//     '.' is a double when it matches \.[0-9]+([eE][-+]?[0-9]+)?; everything else is a string
//     (timestamps such as 2024-01-02 stay strings, as go-yaml v2 gives interface{} targets).
//     Integers beyond int64 become doubles (go-yaml v2 returns uint64 up to 2^64-1; Kubernetes
//     then sees a JSON number either way).
//   - Explicit tags !!str !!int !!float !!bool !!null !!binary (kept as its text) are honoured;
//     a value that does not fit its tag is an error. Any other tag on a scalar (e.g. !Ref) makes it
//     a string; tags on maps and sequences are ignored.
//   - Map keys are strings. A plain key that resolves to another type is converted as
//     sigs.k8s.io/yaml does: true/false → "true"/"false" (so `on:` is the key "true"), ints to
//     decimal, doubles to their shortest form, infinities to ".inf"/"-.inf", NaN to ".nan". A null
//     key, a map or sequence used as a key, and a duplicate key are errors (Kubernetes' strict mode
//     rejects duplicates too).
//   - Merge keys (plain `<<` or !!merge) take a map or a sequence of maps; keys written in the map
//     itself win over merged ones wherever they appear, and earlier maps in a merge sequence win over
//     later ones (the YAML merge spec; go-yaml v2 instead lets a merge override keys written before it).
//   - Anchors and aliases share the anchored node (no copy). A document whose root is null (empty,
//     only comments, `~` or `null`) is skipped. A byte order mark, CRLF line ends, `---` and `...`
//     are accepted.
//
// Limits (ParseOptions, defaults in brackets) each end the parse with an error whose message starts
// with "file:line:column: ":
//   max_depth [1000]            nesting of maps and sequences, counted through aliases → ResourceExhausted
//   max_alias_nodes [1048576]   nodes reachable through aliases in one document (billion laughs)
//                               → ResourceExhausted
//   max_document_bytes [64 MiB] size of one document (and of a JSON text) → ResourceExhausted
//   max_documents [10000]       documents in one YAML stream, empty ones included → ResourceExhausted
// Syntax errors, bad tags, duplicate or null keys and bad merges are InvalidArgument.
//
// ParseJson reads one JSON text with simdjson (On Demand, fully validated); errors give line:column
// computed from the byte offset; duplicate keys are errors, as in YAML; numbers beyond the double
// range are errors. JSON nodes carry the file and byte offsets in their Mark, and line
// and column. Integers in int64 range are ints; larger integers and numbers with a fraction or
// exponent are doubles.
//
// ToJson writes compact JSON (valid UTF-8; invalid bytes in strings become U+FFFD; doubles in
// shortest round-trip form, always with '.', 'e' or both so they stay doubles; NaN and infinities,
// which JSON cannot hold, become null). ToYaml writes canonical block YAML (2-space indent, kubectl
// style sequences, strings quoted when they would otherwise read back as another type or contain
// special characters, multi-line strings as | block scalars where exact); ParseYaml(ToYaml(v))
// equals v.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace gantry::value {

namespace internal {
struct Node;
}  // namespace internal

// Where a node came from. line and column are 1-based (column counts characters); all zero and file
// empty for a node built in code. [begin, end) are byte offsets into the text given to the parser.
struct Mark {
  std::string_view file;  // valid while any Value from the same parse is alive
  uint32_t line = 0;
  uint32_t column = 0;
  size_t begin = 0;
  size_t end = 0;
};

struct MapEntry;

class Value {
 public:
  enum class Type : uint8_t { kNull, kBool, kInt, kDouble, kString, kSeq, kMap };

  Value() = default;  // null
  Value(std::nullptr_t) {}  // NOLINT: implicit by design
  Value(bool b);            // NOLINT
  Value(int i) : Value(static_cast<int64_t>(i)) {}  // NOLINT
  Value(int64_t i);         // NOLINT
  Value(double d);          // NOLINT
  Value(std::string_view s);  // NOLINT
  Value(const char* s) : Value(std::string_view(s)) {}  // NOLINT
  Value(const std::string& s) : Value(std::string_view(s)) {}  // NOLINT
  static Value Map();
  static Value Seq();

  Value(const Value& other);
  Value(Value&& other) noexcept : node_(other.node_) { other.node_ = nullptr; }
  Value& operator=(const Value& other);
  Value& operator=(Value&& other) noexcept;
  ~Value();

  Type type() const;
  bool IsNull() const { return type() == Type::kNull; }
  bool IsBool() const { return type() == Type::kBool; }
  bool IsInt() const { return type() == Type::kInt; }
  bool IsDouble() const { return type() == Type::kDouble; }
  bool IsNumber() const { return IsInt() || IsDouble(); }
  bool IsString() const { return type() == Type::kString; }
  bool IsSeq() const { return type() == Type::kSeq; }
  bool IsMap() const { return type() == Type::kMap; }

  // Scalar access. Calling one on a Value of another type is a programmer error (aborts): check the
  // type first. AsDouble also accepts an int.
  bool AsBool() const;
  int64_t AsInt() const;
  double AsDouble() const;
  std::string_view AsString() const;  // valid while this node lives

  // Entries of a map / items of a sequence; empty for any other type.
  size_t size() const;
  std::span<const MapEntry> entries() const;
  std::span<const Value> items() const;

  // Map lookup: the value under `key`, or nullptr when this is not a map or has no such key.
  // Small maps are scanned, large ones (> 16 entries) use a hash index.
  const Value* Get(std::string_view key) const;
  // Sequence item `i`, or nullptr when this is not a sequence or i is out of range.
  const Value* At(size_t i) const;

  // One step of a path: a map key or a sequence index.
  struct PathElem {
    PathElem(std::string_view k) : key(k) {}  // NOLINT
    PathElem(const char* k) : key(k) {}  // NOLINT
    PathElem(size_t i) : index(i), is_index(true) {}  // NOLINT
    PathElem(int i) : index(static_cast<size_t>(i)), is_index(true) {}  // NOLINT
    std::string_view key;
    size_t index = 0;
    bool is_index = false;
  };
  // Follows `path` from this node: Find({"spec", "template", "spec", "containers", 0, "image"}).
  // nullptr when any step is missing or of the wrong kind.
  const Value* Find(std::initializer_list<PathElem> path) const;

  // Editing (copy-on-write). Set and Erase need a map (or null, which first becomes an empty map);
  // Append needs a sequence (or null, which becomes an empty sequence); anything else aborts.
  // Set replaces the value of an existing key in place, or appends a new entry.
  void Set(std::string_view key, Value v);
  bool Erase(std::string_view key);  // true when the key was there
  void Append(Value v);
  // Pointers to a child for in-place editing (after un-sharing this node); nullptr when absent.
  // Valid until the next edit of this Value.
  Value* MutableGet(std::string_view key);
  Value* MutableAt(size_t i);

  Mark mark() const;

  // Deep equality. Maps are equal when they hold the same keys with equal values, in any order;
  // ints and doubles are different types (1 != 1.0); NaN equals NaN. Marks are ignored.
  friend bool operator==(const Value& a, const Value& b);

 private:
  friend struct internal::Node;
  explicit Value(internal::Node* adopted) : node_(adopted) {}
  internal::Node* Unshare();

  internal::Node* node_ = nullptr;
};

// One map entry. key is always a string Value, carrying the key's own Mark.
struct MapEntry {
  Value key;
  Value value;
};

// Limits of the parsers; see the file comment.
struct ParseOptions {
  size_t max_depth = 1000;
  size_t max_alias_nodes = size_t{1} << 20;
  size_t max_document_bytes = size_t{64} << 20;
  size_t max_documents = 10000;
  // ParseYaml only: skip Gantry's own scanner and parse with libyaml alone (the differential
  // tests and benchmarks compare the two; results are the same either way).
  bool use_libyaml = false;
};

// Parses a YAML stream into its non-null documents, in order. `filename` is used in Marks and
// error messages. Fails with InvalidArgument on a syntax or resolution error and with
// ResourceExhausted when a limit is exceeded; the message starts with "filename:line:column: ".
Result<std::vector<Value>> ParseYaml(std::string_view text, std::string_view filename = "<input>",
                                     const ParseOptions& options = {});

// The one document of YAML compiled into Gantry (a CRD, an install manifest). Such text is part of
// the program, so a parse error or a document count other than one is a bug: it aborts.
Value BuiltInYaml(std::string_view text, std::string_view filename = "built-in");

// "" when `a` and `b` hold the same documents with the same marks on every node and map key, or
// fail with the same code and message; else the first difference ("doc 0 .spec.replicas: mark
// 3:5 [10,12) vs 3:6 [11,12)"). For the differential tests of the YAML paths.
std::string DiffParses(const Result<std::vector<Value>>& a, const Result<std::vector<Value>>& b);

// Parses one JSON text. Errors as ParseYaml (InvalidArgument, ResourceExhausted for depth/size).
Result<Value> ParseJson(std::string_view text, std::string_view filename = "<input>",
                        const ParseOptions& options = {});

// The string (or integer, or bool) at `path` under `v`; "" (0, false) when `v` is null, the path
// is missing, or the value there is of another type. For reading optional fields of Kubernetes
// objects; when absence must be reported, use Find and say which field is missing.
std::string StringAt(const Value* v, std::initializer_list<Value::PathElem> path);
int64_t IntAt(const Value* v, std::initializer_list<Value::PathElem> path);
bool BoolAt(const Value* v, std::initializer_list<Value::PathElem> path);

// Map keys shared among detached copies (Detach): the objects of a cache repeat the same keys
// ("metadata", "f:labels", their data keys...), and a key node costs more than the pointer to
// it. Keys no detached value uses any more are dropped as the pool grows (amortised). Thread-safe.
class KeyPool {
 public:
  KeyPool();
  ~KeyPool();
  KeyPool(const KeyPool&) = delete;
  KeyPool& operator=(const KeyPool&) = delete;
  size_t size() const;

  struct Impl;  // private to value.cc

 private:
  friend Value Detach(const Value& v, KeyPool* keys);
  Impl* impl_;
};

// A deep copy of `v` that shares no memory with `v`: all its nodes live in one block allocated
// for it alone (sized in a first pass; map and sequence vectors are sized exactly), so keeping it
// does not keep the document `v` was parsed from. With `keys`, map keys are taken from (and added
// to) the pool instead. Marks are not copied (line 0, no file). For caches that keep parts of
// large documents (a list page, a watch event) for a long time; cheaper in time and memory than
// ParseJson(ToJson(v)) (bench/kube_cache).
Value Detach(const Value& v, KeyPool* keys = nullptr);

std::string ToJson(const Value& v);
std::string ToYaml(const Value& v);

// Resolves an untagged plain YAML scalar as described in the file comment ("yes" → true,
// "0x1f" → 31, "abc" → "abc"). Exposed for the writers and for tools that build values from text.
Value ResolvePlainScalar(std::string_view text);

// "null", "a boolean", "an integer", "a number", "a string", "a list", "a map": for messages such as
// "spec.replicas is a string, expected an integer".
std::string_view TypeName(const Value& v);

}  // namespace gantry::value
