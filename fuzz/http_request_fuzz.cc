// Fuzzes the HTTP server with the bytes a client sends: each input goes down a fresh TCP
// connection to a real http::Server (Beast's parser with Gantry's header and body limits, the
// request conversion, template and prefix routing, and the handlers' answer), then the client
// half-closes and reads to the end. The server must answer with HTTP/1.1 responses (or nothing,
// for an incomplete request) and close within the time limit, and keep serving the next input.
// The input's first line is also given to ParseListen, which reads --listen flags.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>

#include "fuzz/fuzz.h"
#include "http/http.h"

using namespace gantry;

namespace {

http::Response Echo(const http::Request& r) {
  std::string body = r.method + " " + r.route + " " + r.target + "?" + r.query + "\n";
  for (const auto& [name, value] : r.params) body += name + "=" + value + "\n";
  for (const auto& [name, value] : r.headers) body += name + ": " + value + "\n";
  body += std::to_string(r.body.size()) + " bytes\n";
  return http::Response::Text(200, std::move(body));
}

// The server, started on first use and kept for the process's life.
uint16_t ServerPort() {
  static http::Server* const server = [] {
    auto* s = new http::Server({.max_body_bytes = 64 << 10,
                                .max_header_bytes = 8 << 10,
                                .read_timeout = std::chrono::seconds(2),
                                .write_timeout = std::chrono::seconds(2),
                                .threads = 1});
    s->Handle("GET", "/api/v1/runs/{id}", Echo);
    s->Handle("GET", "/api/v1/apps/{app}/events/{n}", Echo);
    s->Handle("POST", "/hooks/", Echo);
    s->Handle("PUT", "/v2/{repo}/blobs/{digest}", Echo);
    s->Handle("GET", "/healthz", [](const http::Request&) { return http::Response::Text(204, ""); });
    if (Status started = s->Start(); !started.ok()) fuzz::Fail("start the server", started.ToString());
    return s;
  }();
  return server->port();
}

// Sends `request` on a new connection, half-closes it and returns everything the server sends
// until it closes.
// A connect interrupted by one of libFuzzer's signals (EINTR: its timers) or short of ephemeral
// ports (EADDRNOTAVAIL) is tried again on a new socket: a harness limit, not the server's.
int Connect() {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(ServerPort());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int error = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fuzz::Fail("socket", std::to_string(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    error = errno;
    ::close(fd);
    if (error != EINTR && error != EADDRNOTAVAIL && error != EAGAIN) break;
    ::usleep(10'000);
  }
  fuzz::Fail("connect", std::to_string(error));
}

std::string Exchange(std::string_view request) {
  int fd = Connect();
  timeval tv{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  // The server may answer (413, 400) and close before reading it all: a failed send is fine.
  while (!request.empty()) {
    ssize_t n = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request.remove_prefix(static_cast<size_t>(n));
  }
  ::shutdown(fd, SHUT_WR);
  std::string response;
  char buf[16384];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      response.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      fuzz::Fail("the server neither answered nor closed within 5 s", response);
    }
    break;  // closed (or reset after an early answer)
  }
  ::close(fd);
  return response;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = fuzz::Text(data, size);
  (void)http::ParseListen(fuzz::Fields(text, 2)[0], "--listen");
  std::string response = Exchange(text);
  if (!response.empty() && !response.starts_with("HTTP/1.1 ")) fuzz::Fail("not an HTTP/1.1 response", response);
  return 0;
}
