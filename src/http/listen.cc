// http::ParseListen: the one reader of listen addresses (--listen, --metrics-listen).

#include <arpa/inet.h>

#include <charconv>

#include "http/http.h"

namespace gantry::http {

Result<ListenAddress> ParseListen(std::string_view listen, std::string_view flag) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("{} {:?}: {}; expected HOST:PORT, :PORT or [IPV6]:PORT, e.g. 127.0.0.1:8080 or :8080",
                                flag, listen, why);
  };
  if (listen.empty()) return bad("empty");
  ListenAddress out;
  std::string_view port;
  if (listen.starts_with('[')) {
    size_t close = listen.find(']');
    if (close == std::string_view::npos) return bad("no ']' after the IPv6 address");
    out.host = std::string(listen.substr(1, close - 1));
    std::string_view rest = listen.substr(close + 1);
    if (!rest.starts_with(':')) return bad("no :PORT after the IPv6 address");
    port = rest.substr(1);
    in6_addr a6;
    if (::inet_pton(AF_INET6, out.host.c_str(), &a6) != 1) {
      return bad(fmt::format("{:?} is not an IPv6 address", out.host));
    }
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string_view::npos) {
      return bad(listen.find_first_not_of("0123456789") == std::string_view::npos ? "no ':' before the port"
                                                                                   : "no :PORT");
    }
    std::string_view host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("an IPv6 address goes in brackets: [::1]:8080");
    out.host = host.empty() ? "0.0.0.0" : std::string(host);
    in_addr a4;
    if (::inet_pton(AF_INET, out.host.c_str(), &a4) != 1) {
      return bad(fmt::format("{:?} is not an IPv4 address (host names are not resolved)", out.host));
    }
  }
  unsigned value = 0;
  auto [end, err] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || err != std::errc() || end != port.data() + port.size() || value > 65535) {
    return bad(fmt::format("the port {:?} is not a number from 0 to 65535", port));
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

}  // namespace gantry::http
