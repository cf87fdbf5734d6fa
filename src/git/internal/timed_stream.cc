#include "git/internal/timed_stream.h"

#include <fcntl.h>
#include <git2.h>
#include <git2/sys/stream.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "base/log.h"
#include "base/status.h"

namespace gantry::git::internal {
namespace {

using SteadyClock = std::chrono::steady_clock;

thread_local const SteadyClock::time_point* current_deadline = nullptr;
thread_local std::string last_error;

// The layout of libgit2 1.5's git_socket_stream (src/libgit2/streams/socket.h): its SSH transport
// takes the socket of the stream it got with GIT_CONTAINER_OF(io, git_socket_stream, parent)->s,
// so a replacement must keep `s` where libgit2 expects it.
struct TimedStream {
  git_stream parent;
  char* host;
  char* port;
  int s;
};

int Fail(const std::string& message) {
  last_error = message;
  git_error_set_str(GIT_ERROR_NET, message.c_str());
  return -1;
}

// Waits until `fd` is ready for `events` or the deadline passes: 1 ready, 0 timed out, -1 error
// (errno set).
int Wait(int fd, short events) {
  while (true) {
    int timeout_ms = -1;
    if (current_deadline != nullptr) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*current_deadline - SteadyClock::now());
      if (left.count() <= 0) return 0;
      timeout_ms = static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
    }
    pollfd p{.fd = fd, .events = events, .revents = 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
}

std::string What(const TimedStream* st) { return fmt::format("{}:{}", st->host, st->port); }

int Timeout(const TimedStream* st, std::string_view waiting_for) {
  return Fail(fmt::format("{} {}: no answer before the operation's deadline", waiting_for, What(st)));
}

int Connect(git_stream* stream) {
  auto* st = reinterpret_cast<TimedStream*>(stream);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int e = ::getaddrinfo(st->host, st->port, &hints, &found); e != 0) {
    return Fail(fmt::format("resolve {}: {}", st->host, ::gai_strerror(e)));
  }
  std::string last = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    int r = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      int ready = Wait(fd, POLLOUT);
      int error = 0;
      socklen_t len = sizeof(error);
      if (ready == 0) {
        last = "timed out at the operation's deadline";
      } else if (ready < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) {
        last = std::strerror(errno);
      } else if (error != 0) {
        last = std::strerror(error);
      } else {
        r = 0;
      }
    } else if (r != 0) {
      last = std::strerror(errno);
    }
    if (r == 0) {
      // Blocking again for whoever uses the socket directly (libssh2); our reads and writes wait
      // with poll and then never block.
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      st->s = fd;
      ::freeaddrinfo(found);
      return 0;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return Fail(fmt::format("connect to {}: {}", What(st), last));
}

ssize_t Read(git_stream* stream, void* data, size_t len) {
  auto* st = reinterpret_cast<TimedStream*>(stream);
  while (true) {
    int ready = Wait(st->s, POLLIN);
    if (ready == 0) return Timeout(st, "read from");
    if (ready < 0) return Fail(fmt::format("read from {}: {}", What(st), std::strerror(errno)));
    ssize_t n = ::recv(st->s, data, len, MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
    return Fail(fmt::format("read from {}: {}", What(st), std::strerror(errno)));
  }
}

ssize_t Write(git_stream* stream, const char* data, size_t len, int /*flags*/) {
  auto* st = reinterpret_cast<TimedStream*>(stream);
  size_t done = 0;
  while (done < len) {
    int ready = Wait(st->s, POLLOUT);
    if (ready == 0) return Timeout(st, "write to");
    if (ready < 0) return Fail(fmt::format("write to {}: {}", What(st), std::strerror(errno)));
    ssize_t n = ::send(st->s, data + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<size_t>(n);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return Fail(fmt::format("write to {}: {}", What(st), std::strerror(errno)));
    }
  }
  return static_cast<ssize_t>(len);
}

int Close(git_stream* stream) {
  auto* st = reinterpret_cast<TimedStream*>(stream);
  if (st->s >= 0) ::close(st->s);
  st->s = -1;
  return 0;
}

void Free(git_stream* stream) {
  auto* st = reinterpret_cast<TimedStream*>(stream);
  Close(stream);
  std::free(st->host);
  std::free(st->port);
  delete st;
}

int New(git_stream** out, const char* host, const char* port) {
  auto* st = new TimedStream{};
  st->parent.version = GIT_STREAM_VERSION;
  st->parent.connect = Connect;
  st->parent.read = Read;
  st->parent.write = Write;
  st->parent.close = Close;
  st->parent.free = Free;
  st->host = ::strdup(host);
  st->port = ::strdup(port);
  st->s = -1;
  *out = &st->parent;
  return 0;
}

}  // namespace

const std::string& LastNetworkError() { return last_error; }

void RegisterTimedStream() {
  // TimedStream copies git_socket_stream's layout as libgit2 1.5 has it (checked against its
  // source); with another libgit2 the layout is unchecked, so its own stream stays: no deadlines
  // on Git connections, said once, rather than an SSH transport reading the wrong field.
  int major = 0, minor = 0, revision = 0;
  git_libgit2_version(&major, &minor, &revision);
  if (major != 1 || minor != 5) {
    log::Warn("libgit2 {}.{}.{}: Git connections have no deadlines (the timed socket stream is checked against "
              "libgit2 1.5's layout only)",
              major, minor, revision);
    return;
  }
  git_stream_registration registration{};
  registration.version = GIT_STREAM_VERSION;
  registration.init = New;
  if (git_stream_register(GIT_STREAM_STANDARD, &registration) != 0) {
    const git_error* e = git_error_last();
    gantry::DieBecause(fmt::format("libgit2 refused the timed socket stream: {}",
                           e != nullptr && e->message != nullptr ? e->message : "unknown error"));
  }
}

NetworkDeadline::NetworkDeadline(SteadyClock::time_point deadline)
    : previous_(current_deadline), deadline_(deadline) {
  current_deadline = &deadline_;
  last_error.clear();
}

NetworkDeadline::~NetworkDeadline() { current_deadline = previous_; }

}  // namespace gantry::git::internal
