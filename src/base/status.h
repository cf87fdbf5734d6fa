#pragma once
// Status and Result<T>: how every fallible function in Gantry reports failure.
//
// A Status is a canonical code (the gRPC / Abseil set) plus a message a user can act on. Errors gain
// context as they travel up: each layer prefixes what it was doing with WithContext(), so the final
// message reads "sync podinfo-dev: apply apps/v1 Deployment podinfo/web: conflict on .spec.replicas".
// A Status may carry a reason: a machine-readable CamelCase word ("PruneBlocked", "FetchFailed")
// that callers branch on where the code alone is too coarse; never parse the message. Modules
// define their reasons as constants next to the functions that return them. Context keeps it.
// Result<T> holds either a value or a non-OK Status. Both are [[nodiscard]]; neither throws.
// Both are values: cheap to move, safe to copy, not synchronised.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace gantry {

enum class Code {
  kOk = 0,
  kCancelled,
  kUnknown,
  kInvalidArgument,
  kDeadlineExceeded,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kResourceExhausted,
  kFailedPrecondition,
  kAborted,  // also: conflicts (optimistic concurrency, field-manager conflicts)
  kOutOfRange,
  kUnimplemented,
  kInternal,
  kUnavailable,
  kDataLoss,
  kUnauthenticated,
};

// "InvalidArgument", "NotFound", ...
std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // The machine-readable reason ("" when none was given).
  const std::string& reason() const { return reason_; }
  Status& set_reason(std::string_view reason) & {
    reason_ = reason;
    return *this;
  }
  Status&& set_reason(std::string_view reason) && {
    reason_ = reason;
    return std::move(*this);
  }
  bool Is(Code code, std::string_view reason) const { return code_ == code && reason_ == reason; }

  // A server's request to wait before retrying (HTTP Retry-After); honoured by Retry().
  std::optional<std::chrono::milliseconds> retry_after() const { return retry_after_; }
  Status& set_retry_after(std::chrono::milliseconds d) {
    retry_after_ = d;
    return *this;
  }

  // Returns this status with "context: " prefixed to the message; OK stays OK.
  Status WithContext(std::string_view context) const&;
  Status WithContext(std::string_view context) &&;

  // "NotFound: message", or "OK".
  std::string ToString() const;

  // Explicitly discards a status the caller has decided not to act on.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_ && a.reason_ == b.reason_;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::string reason_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

inline Status OkStatus() { return Status(); }

#define GANTRY_DEFINE_ERROR(Name, code)                                                   \
  template <typename... Args>                                                             \
  Status Name(fmt::format_string<Args...> format, Args&&... args) {                       \
    return Status(code, fmt::format(format, std::forward<Args>(args)...));                \
  }
GANTRY_DEFINE_ERROR(CancelledError, Code::kCancelled)
GANTRY_DEFINE_ERROR(UnknownError, Code::kUnknown)
GANTRY_DEFINE_ERROR(InvalidArgumentError, Code::kInvalidArgument)
GANTRY_DEFINE_ERROR(DeadlineExceededError, Code::kDeadlineExceeded)
GANTRY_DEFINE_ERROR(NotFoundError, Code::kNotFound)
GANTRY_DEFINE_ERROR(AlreadyExistsError, Code::kAlreadyExists)
GANTRY_DEFINE_ERROR(PermissionDeniedError, Code::kPermissionDenied)
GANTRY_DEFINE_ERROR(ResourceExhaustedError, Code::kResourceExhausted)
GANTRY_DEFINE_ERROR(FailedPreconditionError, Code::kFailedPrecondition)
GANTRY_DEFINE_ERROR(AbortedError, Code::kAborted)
GANTRY_DEFINE_ERROR(OutOfRangeError, Code::kOutOfRange)
GANTRY_DEFINE_ERROR(UnimplementedError, Code::kUnimplemented)
GANTRY_DEFINE_ERROR(InternalError, Code::kInternal)
GANTRY_DEFINE_ERROR(UnavailableError, Code::kUnavailable)
GANTRY_DEFINE_ERROR(DataLossError, Code::kDataLoss)
GANTRY_DEFINE_ERROR(UnauthenticatedError, Code::kUnauthenticated)
#undef GANTRY_DEFINE_ERROR

// A Status from errno after a failed system call: "what: strerror" with a code that fits
// (ENOENT → NotFound, EACCES → PermissionDenied, ...).
Status ErrnoError(int err, std::string_view what);

// Either a T or a non-OK Status. Constructing from an OK Status is a programmer error (aborts).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    CheckNotOk();
  }

  bool ok() const { return v_.index() == 0; }
  const Status& status() const& {
    static const Status kOk;
    return ok() ? kOk : std::get<1>(v_);
  }
  // By value from a temporary, so that `GANTRY_RETURN_IF_ERROR(Make().status())` does not keep a
  // reference into the destroyed Result.
  Status status() && { return ok() ? Status() : std::get<1>(std::move(v_)); }

  // Access to the value; aborts when there is none.
  T& value() & { return CheckOk(), std::get<0>(v_); }
  const T& value() const& { return CheckOk(), std::get<0>(v_); }
  T&& value() && { return CheckOk(), std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  T value_or(T fallback) const& { return ok() ? std::get<0>(v_) : std::move(fallback); }

 private:
  void CheckOk() const;
  void CheckNotOk() const;
  std::variant<T, Status> v_;
};

[[noreturn]] void DieBecause(std::string_view what);

template <typename T>
void Result<T>::CheckOk() const {
  if (!ok()) DieBecause("Result::value() on error: " + std::get<1>(v_).ToString());
}
template <typename T>
void Result<T>::CheckNotOk() const {
  if (!ok() && std::get<1>(v_).ok()) DieBecause("Result constructed from an OK Status");
}

namespace internal {
inline const Status& GetStatus(const Status& s) { return s; }
template <typename T>
const Status& GetStatus(const Result<T>& r) { return r.status(); }
}  // namespace internal

}  // namespace gantry

#define GANTRY_CONCAT_INNER(a, b) a##b
#define GANTRY_CONCAT(a, b) GANTRY_CONCAT_INNER(a, b)

// Returns the status of `expr` (a Status or Result) from the current function when it is not OK.
#define GANTRY_RETURN_IF_ERROR(expr)                                                    \
  do {                                                                                  \
    if (auto&& gantry_s = (expr); !gantry_s.ok())                                       \
      return ::gantry::internal::GetStatus(gantry_s);                                   \
  } while (0)

// `lhs = value of expr` or return its error: GANTRY_ASSIGN_OR_RETURN(auto doc, Parse(text));
#define GANTRY_ASSIGN_OR_RETURN(lhs, expr) \
  GANTRY_ASSIGN_OR_RETURN_IMPL(GANTRY_CONCAT(gantry_r_, __LINE__), lhs, expr)
#define GANTRY_ASSIGN_OR_RETURN_IMPL(r, lhs, expr) \
  auto r = (expr);                                 \
  if (!r.ok()) return r.status();                  \
  lhs = std::move(r).value()

// Aborts with a message when a programmer's invariant does not hold. Environment errors are
// Status values, never checks.
#define GANTRY_CHECK(cond)                                                                    \
  do {                                                                                        \
    if (!(cond)) ::gantry::DieBecause(fmt::format("{}:{}: check failed: {}", __FILE__,       \
                                                  __LINE__, #cond));                          \
  } while (0)
