// Forge::PutComment: the comment of a pull request found again by a marker in its body, edited in
// place or created (forge.h lists the calls per forge).

#include <fmt/format.h>

#include "base/percent.h"
#include "forge/internal/api.h"
#include "value/value.h"

namespace gantry::forge::internal {
namespace {

constexpr size_t kPerPage = 50;
constexpr int kMaxPages = 40;  // 2,000 comments: a marker further down is not looked for

// The comments' collection of pull request `number`: Gitea and GitHub list a pull request's
// comments as its issue's; GitLab a merge request's notes.
std::string Collection(const Options& o, std::string_view repo, int64_t number) {
  if (o.kind == Kind::kGitLab) return fmt::format("{}/projects/{}/merge_requests/{}/notes", o.api_url, PercentEncode(repo), number);
  return fmt::format("{}/repos/{}/issues/{}/comments", o.api_url, repo, number);
}

// The id of the first comment holding `marker`, 0 when none does.
Result<int64_t> FindComment(const Api& api, std::string_view repo, int64_t number, std::string_view marker,
                            std::string_view what) {
  const Options& o = api.options();
  for (int page = 1; page <= kMaxPages; ++page) {
    // Gitea lists every comment at once (no paging parameters); GitHub and GitLab page.
    std::string url = Collection(o, repo, number);
    if (o.kind == Kind::kGitHub) url += fmt::format("?per_page={}&page={}", kPerPage, page);
    if (o.kind == Kind::kGitLab) url += fmt::format("?per_page={}&page={}&sort=asc&order_by=created_at", kPerPage, page);
    GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, api.Call("GET", std::move(url), "", what));
    auto list = value::ParseJson(r.body, "comments");
    if (!list.ok()) return list.status().WithContext(what);
    if (!list->IsSeq()) return InvalidArgumentError("{}: the forge answered a list of comments with {:.80}", what, r.body);
    for (const value::Value& c : list->items()) {
      if (value::StringAt(&c, {"body"}).find(marker) != std::string::npos) {
        const int64_t id = value::IntAt(&c, {"id"});
        if (id > 0) return id;
      }
    }
    if (o.kind == Kind::kGitea || list->size() < kPerPage) break;
  }
  return 0;
}

}  // namespace

Result<int64_t> PutComment(const Api& api, std::string_view repo, int64_t number, std::string_view marker,
                           std::string_view body) {
  const Options& o = api.options();
  const std::string what = fmt::format("comment on {} pull request {} of {}", Name(o.kind), number, repo);
  if (number <= 0 || marker.empty() || body.find(marker) == std::string_view::npos) {
    return InvalidArgumentError("{}: a pull request number and a body holding its marker {:?} are required", what, marker);
  }
  value::Value json = value::Value::Map();
  json.Set("body", body);
  GANTRY_ASSIGN_OR_RETURN(int64_t id, FindComment(api, repo, number, marker, what));
  if (id == 0) {
    GANTRY_ASSIGN_OR_RETURN(http::ClientResponse r, api.Call("POST", Collection(o, repo, number), value::ToJson(json), what));
    auto made = value::ParseJson(r.body, "comment");
    id = made.ok() ? value::IntAt(&*made, {"id"}) : 0;
    if (id <= 0) return InvalidArgumentError("{}: the forge answered the new comment without its id: {:.80}", what, r.body);
    return id;
  }
  const std::string url = o.kind == Kind::kGitLab ? fmt::format("{}/{}", Collection(o, repo, number), id)
                                                  : fmt::format("{}/repos/{}/issues/comments/{}", o.api_url, repo, id);
  GANTRY_RETURN_IF_ERROR(api.Call(o.kind == Kind::kGitLab ? "PUT" : "PATCH", url, value::ToJson(json), what).status());
  return id;
}

}  // namespace gantry::forge::internal
