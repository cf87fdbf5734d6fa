#include "base/status.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string_view>

namespace gantry {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError("{} is odd", x);
  return x / 2;
}

Result<int> Quarter(int x) {
  GANTRY_ASSIGN_OR_RETURN(int h, Half(x));
  GANTRY_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  GANTRY_RETURN_IF_ERROR(Half(x));
  return OkStatus();
}

// Debian's libspdlog carries a copy of fmt's string writer that aborted on {:?} of bytes that
// are not UTF-8 when the dynamic linker picked it (fuzz/duration_fuzz.cc found it through
// ParseDuration); base's link options make fmt's own copy win.
TEST(Status, QuotingBytesThatAreNotUtf8EscapesThemInsteadOfAborting) {
  Status s = InvalidArgumentError("{:?} is not a duration", std::string_view("\xcb\xc7\xdd"));
  EXPECT_EQ(s.message(), "\"\\xcb\\xc7\\xdd\" is not a duration");
  EXPECT_EQ(fmt::format("{:?}", std::string_view("a\xc3")), "\"a\\xc3\"");
}

TEST(Status, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(Status, ContextIsPrefixed) {
  Status s = NotFoundError("deployment {} not found", "web").WithContext("sync podinfo");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "sync podinfo: deployment web not found");
  EXPECT_EQ(s.ToString(), "NotFound: sync podinfo: deployment web not found");
  EXPECT_TRUE(OkStatus().WithContext("x").ok());
}

TEST(Result, PropagatesErrorsThroughMacros) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
  EXPECT_EQ(CheckEven(3).code(), Code::kInvalidArgument);
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(r.value_or(-1), -1);
}

TEST(Result, HoldsMoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  Result<int> r = NotFoundError("nothing");
  EXPECT_DEATH((void)r.value(), "nothing");
}

TEST(Status, ErrnoMapsToCanonicalCodes) {
  EXPECT_EQ(ErrnoError(ENOENT, "open x").code(), Code::kNotFound);
  EXPECT_EQ(ErrnoError(EACCES, "open x").code(), Code::kPermissionDenied);
  EXPECT_EQ(ErrnoError(ECONNREFUSED, "connect").code(), Code::kUnavailable);
  EXPECT_NE(ErrnoError(ENOENT, "open x").message().find("open x: "), std::string::npos);
}

TEST(Status, ReasonSurvivesContextAndIsWhatCallersBranchOn) {
  Status s = FailedPreconditionError("refusing to prune 3 objects").set_reason("PruneBlocked");
  Status up = s.WithContext("sync guestbook");
  EXPECT_EQ(up.reason(), "PruneBlocked");
  EXPECT_TRUE(up.Is(Code::kFailedPrecondition, "PruneBlocked"));
  EXPECT_FALSE(up.Is(Code::kAborted, "PruneBlocked"));
  EXPECT_EQ(NotFoundError("x").reason(), "");
  EXPECT_NE(s, FailedPreconditionError("refusing to prune 3 objects"));
}

// GANTRY_RETURN_IF_ERROR(Make().status()) kept a reference into the temporary Result, destroyed
// before the status was returned: `gantry cluster add` printed freed memory as its error.
TEST(Result, TheStatusOfATemporaryOutlivesIt) {
  const std::string message(200, 'x');  // on the heap, where a freed buffer gets reused
  auto make = [&]() -> Result<std::string> { return NotFoundError("{}", message); };
  auto returns = [&]() -> Status {
    GANTRY_RETURN_IF_ERROR(make().status());
    return OkStatus();
  };
  Status s = returns();
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), message);
  EXPECT_TRUE(Result<int>(1).status().ok());
}

}  // namespace
}  // namespace gantry
