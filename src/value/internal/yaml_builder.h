#pragma once
// Builds Value trees from YAML parse events (document start and end, scalar, alias, collection
// start and end), with marks, anchors, merge keys, key conversion, scalar resolution and the
// limits of ParseOptions. Private to src/value. Two drivers feed it: the libyaml event loop
// (yaml_parser.cc) and Gantry's own scanner (yaml_fast.cc), so both give the same trees and the
// same errors. Not thread-safe; one per parse.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "value/internal/node.h"
#include "value/value.h"

namespace gantry::value::internal {

// A place in the text: 1-based line and column (in characters) and the byte offset.
struct YamlPos {
  uint32_t line = 0;
  uint32_t column = 0;
  size_t offset = 0;
};

class YamlBuilder {
 public:
  YamlBuilder(std::string_view text, std::string_view filename, const ParseOptions& options);
  ~YamlBuilder();
  YamlBuilder(const YamlBuilder&) = delete;
  YamlBuilder& operator=(const YamlBuilder&) = delete;

  // Each returns false when it fails, with the error ParseYaml reports (limits, tags, keys,
  // merges, anchors) in TakeError(); no event may follow a failure.
  bool StartDocument(YamlPos start);
  bool EndDocument(YamlPos end);
  // `plain` is the plain style without a tag (resolved by the YAML 1.1 rules); `tag` is the full
  // tag ("tag:yaml.org,2002:int", "!Ref", "!") or empty; `anchor` is empty when there is none.
  bool Scalar(std::string_view text, bool plain, std::string_view tag, std::string_view anchor,
                YamlPos start, YamlPos end);
  // Scalar() for a map key without properties or tag, where a key is expected (the scanner's
  // block and flow map keys): the same result with less work.
  bool Key(std::string_view text, bool plain, YamlPos start, YamlPos end);
  bool Alias(std::string_view name, YamlPos start);
  bool StartCollection(bool is_map, std::string_view anchor, YamlPos start, YamlPos end);
  bool EndCollection(YamlPos start, YamlPos end);
  Status TakeError() { return std::move(error_); }

  // The non-null documents so far.
  std::vector<Value> TakeDocuments() { return std::move(docs_); }
  const std::string& filename() const { return filename_; }

 private:
  struct Anchor {
    Value value;
    uint64_t count;   // nodes in the subtree, aliases expanded
    uint32_t height;  // levels of maps and sequences in the subtree
  };
  // A map entry being collected: two owned references, laid out as a MapEntry (so a finished
  // map takes its entries with one memcpy).
  struct RawEntry {
    Node* key;
    Node* value;
  };
  // A map or sequence being filled. Its children sit on the shared stacks (items_ or entries_)
  // from `first` on, and move into the node, sized exactly, when it ends. The builder holds the
  // references of node and key (raw pointers: one parse makes millions of them, and a Value's
  // out-of-line destructor per move was a measurable part of it).
  // Frames are reused (stack_ never shrinks; depth_ of them are open): a frame's construction and
  // destruction per collection were a tenth of the builder's work.
  struct Frame {
    Node* node = nullptr;  // owned reference
    bool is_map = false;
    size_t first = 0;
    bool have_key = false;
    bool key_is_merge = false;
    Node* key = nullptr;  // owned when have_key and not key_is_merge
    std::string anchor;
    uint64_t count = 1;
    uint32_t height = 1;
    std::vector<bool> from_merge;  // map entries that came from a merge key; empty if none
    std::unique_ptr<std::unordered_map<std::string_view, size_t>> index;  // for large maps
  };

  std::string Where(YamlPos p) const;
  bool TooLarge(YamlPos end) const {
    return end.offset - std::min(doc_start_, end.offset) > max_document_bytes_;
  }
  bool SizeError(YamlPos end);
  bool Fail(Status s) {
    error_ = std::move(s);
    return false;
  }
  bool ExpectingKey() const {
    return depth_ > 0 && top().is_map && !top().have_key;
  }
  Frame& top() { return stack_[depth_ - 1]; }
  const Frame& top() const { return stack_[depth_ - 1]; }
  // Each of these returns a new node in the document's arena (nullptr after Fail).
  Node* Tagged(std::string_view kind, std::string_view text, YamlPos at);
  Node* Str(std::string_view text) { return StringNode::Make(text, file_); }
  Node* KeyString(Node* k, YamlPos at);  // takes k
  // Each takes `n` (an owned reference), also when it fails.
  bool AddScalar(Node* n, std::string_view anchor, YamlPos start, YamlPos end);
  bool Add(Node* n, uint64_t count, uint32_t height, YamlPos at);
  ptrdiff_t FindEntry(const Frame& f, std::string_view key) const;
  void AppendEntry(Frame& f, Node* key, Node* value);
  Status MergeOne(Frame& f, const Value& src, YamlPos at);
  Status Merge(Frame& f, const Value& v, YamlPos at);

  std::string_view text_;
  std::string filename_;
  const ParseOptions& options_;
  size_t max_document_bytes_;  // options_' limit, at most kMaxMarkedBytes
  SourceFile* file_;
  std::vector<Frame> stack_;
  size_t depth_ = 0;  // open collections: stack_[0, depth_)
  std::vector<Node*> items_;       // children of the open sequences (owned references)
  std::vector<RawEntry> entries_;  // children of the open maps
  std::unordered_map<std::string, Anchor> anchors_;
  std::vector<Value> docs_;
  Value root_;
  size_t documents_ = 0;
  size_t doc_start_ = 0;
  uint64_t alias_nodes_ = 0;
  Status error_;
};

}  // namespace gantry::value::internal
