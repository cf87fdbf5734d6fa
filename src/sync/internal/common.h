#pragma once
// Helpers shared by the files of the sync module. Not part of its interface.

#include <functional>
#include <string>
#include <vector>

#include "kube/kube.h"
#include "sync/sync.h"
#include "value/value.h"

namespace gantry::sync::internal {

std::string GroupOf(std::string_view api_version);

// Whether the object's gantry.dev/ or Argo CD sync-options annotation lists `option`.
bool SyncOptionSet(const value::Value& object, std::string_view option);

// Whether a live object opts out of pruning (gantry.dev/prune: disabled, or Prune=false).
bool PruneDisabled(const value::Value& live);

// An object's sync option: its own annotation's, else its application's, else `fallback`.
bool Enabled(Tristate object, Tristate application, bool fallback = false);

// How a live object is pruned: its annotation (gantry.dev/prune: disabled, Prune=false|confirm|true),
// else the application's Prune= option, else kPrune. Read from the live object: what the cluster
// holds is what was applied.
PruneMode PruneModeOf(const value::Value& live, const Options& options);

// Runs fn(i) for i in [0, n) on up to `parallelism` threads.
void ParallelFor(size_t n, int parallelism, const std::function<void(size_t)>& fn);

// The inventory ConfigMap of an application.
kube::ObjectRef InventoryRef(const Options& options);

// The objects listed by an inventory ConfigMap's data.objects ("" : none). DataLoss when it cannot
// be read (prune must never guess).
Result<std::vector<kube::ObjectRef>> ParseInventory(std::string_view text, const kube::ObjectRef& where);

// The inventory ConfigMap listing `refs`, and its data.objects text.
value::Value InventoryObject(const Options& options, const std::vector<kube::ObjectRef>& refs, std::string* text);

}  // namespace gantry::sync::internal
