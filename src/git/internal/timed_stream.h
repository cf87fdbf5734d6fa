#pragma once
// Private to gantry::git: libgit2's plain TCP stream replaced by one whose connect, read and write
// wait at most until the calling thread's network deadline (NetworkDeadline). libgit2 1.5 has no
// socket timeouts: a server that accepted the connection and then sent nothing held a fetch or a
// push until the kernel gave up (hours, or never), since the deadline checks in the progress
// callbacks only run when data arrives. HTTPS goes through it too (libgit2's OpenSSL stream sits
// on the standard stream); SSH uses its socket, but libssh2 then reads the socket itself, so an
// SSH server that goes silent after the handshake is still bounded only by the kernel.

#include <chrono>
#include <string>

namespace gantry::git::internal {

// What the last failed connect, read or write on this thread saw ("write to 127.0.0.1:8080:
// Connection reset by peer"), since the innermost NetworkDeadline began; "" when none failed.
// libgit2 sometimes loses its own message on the way up (its push reports an error without one).
const std::string& LastNetworkError();

// Replaces libgit2's standard stream; call once, after git_libgit2_init(). Aborts if libgit2
// refuses (a programmer error: a libgit2 built without stream registration).
void RegisterTimedStream();

// While alive, network I/O of libgit2 on this thread fails once `deadline` has passed (with a
// GIT_ERROR_NET error saying how long it waited); without one, it waits as long as the kernel
// lets it. Scopes nest (the inner one wins until it ends). Not shared between threads.
// Each NetworkDeadline starts with an empty one.
class NetworkDeadline {
 public:
  explicit NetworkDeadline(std::chrono::steady_clock::time_point deadline);
  ~NetworkDeadline();
  NetworkDeadline(const NetworkDeadline&) = delete;
  NetworkDeadline& operator=(const NetworkDeadline&) = delete;

 private:
  const std::chrono::steady_clock::time_point* previous_;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace gantry::git::internal
