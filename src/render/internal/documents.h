#pragma once
// Private to gantry::render: turning parsed YAML documents into Manifests.

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "render/render.h"
#include "value/value.h"

namespace gantry::render::internal {

// "file:line:column" of a parsed node, "<generated>" for one built in code.
std::string Where(const value::Value& v);

// Appends `doc` after ValidateObject; a `kind: List` or typed list (ConfigMapList, RoleList, ...)
// with `items` is expanded into its items instead (InvalidArgument naming the list and the index
// of an item without apiVersion or kind). Each Manifest's source is `source`, or Where() of the
// object (of each item) when `source` is empty.
Status AddDocument(value::Value doc, const std::string& source, std::vector<Manifest>& out);

// Parses a renderer's output stream. Sources are "`filename`:line:column", or with helm_sources
// "`filename`: <path>" from the nearest preceding "# Source: <path>" comment when there is one.
Result<std::vector<Manifest>> ParseRendered(std::string_view text, const std::string& filename,
                                            const Limits& limits, bool helm_sources);

// What `manifests` occupy in memory, approximately (parsed nodes, their strings and entry tables,
// the sources): the size a RenderCache entry is charged. The rendered text is 5 to 20 times smaller
// than its parsed objects, so charging the text would let a cache hold many times its budget.
size_t ManifestBytes(const std::vector<Manifest>& manifests);

}  // namespace gantry::render::internal
