#pragma once
// server/console: the web console (console/, docs/console.md) served by `gantry server` from the
// files embedded in the binary at build time (cmake/console.cmake generates the table that
// EmbeddedConsole() returns), so the server needs no other files.
//
//   GET /                 index.html
//   GET /assets/NAME      a built file (Vite puts a content hash in NAME): Cache-Control
//                         "public, max-age=31536000, immutable"; 404 when there is no such file
//   GET /api/...          never the console: a path no API route took is a 404 problem
//   GET anything else     the file of that path if there is one, else index.html (the console's
//                         own routes, /runs/7, are opened and reloaded as pages)
//
// Everything but the hashed assets is "Cache-Control: no-cache", revalidated by its ETag
// (If-None-Match → 304). Every answer carries a strict Content-Security-Policy (kConsoleCsp: only
// the console's own scripts, styles and API; no inline script, no framing), nosniff and
// no-referrer. A client that accepts gzip gets the precompressed bytes the build made.
//
// A binary configured without the console (GANTRY_BUILD_CONSOLE=OFF, or no npm) embeds no file:
// then / is 404 with a message saying so.
//
// Thread-safety: the table is immutable; the handler is safe to call concurrently.

#include <span>
#include <string_view>

#include "http/http.h"
#include "server/front.h"

namespace gantry::server {

// One built file of the console.
struct ConsoleAsset {
  std::string_view path;          // relative to the console's root: "index.html", "assets/index-3f2a.js"
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view body;
  std::string_view gzip;  // the same bytes gzipped, or empty when the build made none
  std::string_view etag;  // quoted strong ETag of body: "\"9f86d081884c7d65\""
};

// The Content-Security-Policy of every console answer.
inline constexpr std::string_view kConsoleCsp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

// The files embedded in this binary (empty when it was built without the console).
std::span<const ConsoleAsset> EmbeddedConsole();

// The answer to the GET `req` from `assets`, as the file comment says.
http::Response ServeConsoleRequest(std::span<const ConsoleAsset> assets, const http::Request& req);

// Routes GET / (a prefix: every path no longer route takes) on `front` to ServeConsoleRequest.
// `assets` must outlive the front's serving.
void ServeConsole(Front& front, std::span<const ConsoleAsset> assets = EmbeddedConsole());

}  // namespace gantry::server
