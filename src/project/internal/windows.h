#pragma once
// Private to src/project: the window checks ParseProject runs.

#include "base/status.h"
#include "project/project.h"

namespace gantry::project::internal {

// InvalidArgument "SOURCE: project NAME: sync windows overlap: ..." when an allow and a deny window
// could both apply to one application and are both active at some minute of 2028 (from
// 2028-01-01T00:00Z for 366 days); names both windows and the first such minute.
Status CheckWindowOverlaps(const Project& p);

// "deny \"0 22 * * *\" 8h (gantry.yaml:12:7)"
std::string WindowName(const Window& w);

}  // namespace gantry::project::internal
