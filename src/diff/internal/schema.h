#pragma once
// The slice of the built-in Kubernetes schema the diff needs: how lists merge (associative lists
// and their keys, sets, atomic lists), which fields hold quantities and which are typed integers.
// Private to src/diff.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gantry::diff::internal {

struct ListSpec {
  enum class Type : uint8_t { kAtomic, kMap, kSet };
  Type type = Type::kAtomic;
  std::string_view keys[2];  // for kMap
  size_t num_keys = 0;
};

// Where a field sits: the object's kind, the field's name, the name of the nearest enclosing field
// (list items skipped; "" for a top-level field), whether the field sits directly in a list item
// (containers[].ports) rather than in a map, and whether the enclosing field is itself top-level
// (metadata.finalizers, spec.ports).
struct FieldContext {
  std::string_view kind;
  std::string_view field;
  std::string_view parent;
  bool in_item = false;
  bool parent_top_level = false;
};

// The list type of the list in `field`; atomic unless the table knows it.
const ListSpec& ListSpecFor(const FieldContext& where);

// The value a key field takes when desired leaves it out ("TCP" for protocol); empty if none.
std::string_view KeyFieldDefault(std::string_view key_field);

// True when a scalar in `field` is a resource quantity.
bool IsQuantityField(const FieldContext& where);

// True when the schema types `field` as an integer, so the apiserver stores "80" as 80.
bool IsIntegerField(const FieldContext& where);

}  // namespace gantry::diff::internal
