#pragma once
// A JSON Schema (2020-12) subset, enough for what api/openapi.json uses, to check the API's
// responses against the document in tests: type (a name or a list), properties, required,
// additionalProperties (false or a schema), items, enum, const, $ref ("#/a/b" in the same
// document), anyOf, oneOf, allOf. Annotations (format, description, minimum, default, ...) are
// not checked. Used by tests only.

#include <string>

#include "base/status.h"
#include "value/value.h"

namespace gantry::server::internal {

// OK when `instance` is valid under `schema`, whose $refs resolve in `document`; InvalidArgument
// naming the first place that is not ("$.items[0].state: \"done\" is not one of [...]").
// InvalidArgument too for a $ref that does not resolve or a keyword this subset does not know.
Status ValidateJson(const value::Value& document, const value::Value& schema, const value::Value& instance,
                    const std::string& where = "$");

}  // namespace gantry::server::internal
