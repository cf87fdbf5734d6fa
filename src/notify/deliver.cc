// One delivery attempt: an HTTP POST (Slack, Teams, generic webhook) through http::Client, or one
// message over SMTP through libcurl's smtp:// (STARTTLS when offered, AUTH as the server offers).

#include <curl/curl.h>

#include <algorithm>
#include <ctime>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "http/client.h"
#include "notify/notify.h"
#include "webhook/webhook.h"

namespace gantry::notify {
namespace {

// At most 200 bytes of a body, on one line, for a recorded reason.
std::string Excerpt(std::string_view body) {
  std::string out(body.substr(0, 200));
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  if (body.size() > 200) out += "...";
  return out;
}

// `message` without `secret_url` (Slack's and Teams' URLs are credentials).
std::string Scrub(std::string message, const std::string& secret_url) {
  if (secret_url.empty()) return message;
  for (size_t at = message.find(secret_url); at != std::string::npos; at = message.find(secret_url)) {
    message.replace(at, secret_url.size(), "<provider URL>");
  }
  return message;
}

Attempt Post(const Provider& p, const store::Notification& n, std::chrono::seconds timeout) {
  http::Client client({.connect_timeout = std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(10)),
                       .timeout = timeout,
                       .ca_file = p.ca_file,
                       .max_response_bytes = 64 * 1024});
  http::ClientRequest req{.method = "POST", .url = p.url, .body = n.body};
  req.headers["content-type"] = "application/json";
  if (p.type == ProviderType::kWebhook) {
    req.headers["x-gantry-event"] = n.event_id;
    req.headers["x-gantry-delivery"] = std::to_string(n.id);
    req.headers["x-gantry-timestamp"] = std::to_string(std::time(nullptr));
    req.headers["x-gantry-signature"] = Signature(p.secret, n.body);
  }
  auto r = client.Send(req);
  if (!r.ok()) {
    const std::string url = p.type == ProviderType::kWebhook ? "" : p.url;
    return {Status(r.status().code(), Scrub(r.status().message(), url)), true};
  }
  if (r->status >= 200 && r->status < 300) return {OkStatus(), false};
  // 4xx other than 408/429 will not get better by retrying (a wrong URL, a refused payload).
  const bool retryable = r->status >= 500 || r->status == 408 || r->status == 429;
  return {UnavailableError("HTTP {}: {}", r->status, Excerpt(r->body)), retryable};
}

struct Upload {
  std::string_view data;
  size_t at = 0;
};

size_t ReadUpload(char* buf, size_t size, size_t n, void* user) {
  auto* u = static_cast<Upload*>(user);
  const size_t take = std::min(size * n, u->data.size() - u->at);
  std::copy_n(u->data.data() + u->at, take, buf);
  u->at += take;
  return take;
}

// The message as RFC 5322 text with CRLF line ends (libcurl dot-stuffs it).
std::string Message(const Provider& p, const store::Notification& n) {
  std::string to;
  for (const auto& addr : p.to) to += (to.empty() ? "" : ", ") + addr;
  std::string text = fmt::format(
      "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {:%a, %d %b %Y %H:%M:%S +0000}\r\nMessage-ID: <{}.{}@gantry>\r\n"
      "X-Gantry-Event: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n",
      p.from, to, n.subject, std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()), n.event_id,
      n.id, n.event_id);
  for (size_t at = 0; at < n.body.size();) {
    size_t nl = n.body.find('\n', at);
    if (nl == std::string::npos) nl = n.body.size();
    std::string_view line(n.body.data() + at, nl - at);
    if (line.ends_with('\r')) line.remove_suffix(1);
    text += line;
    text += "\r\n";
    at = nl + 1;
  }
  return text;
}

Attempt Mail(const Provider& p, const store::Notification& n, std::chrono::seconds timeout) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return {InternalError("curl_easy_init failed"), true};
  const std::string message = Message(p, n);
  Upload upload{message};
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* rcpt = nullptr;
  for (const auto& addr : p.to) rcpt = curl_slist_append(rcpt, ("<" + addr + ">").c_str());
  const std::string from = "<" + p.from + ">";
  curl_easy_setopt(curl, CURLOPT_URL, p.url.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadUpload);
  curl_easy_setopt(curl, CURLOPT_READDATA, &upload);
  curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count() * 1000));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
  if (p.url.starts_with("smtp://")) {
    curl_easy_setopt(curl, CURLOPT_USE_SSL, p.starttls_required ? CURLUSESSL_ALL : CURLUSESSL_TRY);
  }
  if (!p.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, p.ca_file.c_str());
  if (!p.username.empty()) {
    curl_easy_setopt(curl, CURLOPT_USERNAME, p.username.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, p.password.c_str());
  }
  const CURLcode rc = curl_easy_perform(curl);
  long reply = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply);
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(curl);
  if (rc == CURLE_OK) return {OkStatus(), false};
  const std::string what = error[0] != '\0' ? error : curl_easy_strerror(rc);
  // A permanent SMTP refusal (5xx: no such mailbox, authentication refused) is not retried.
  const bool permanent = reply >= 500 && reply < 600;
  if (reply != 0) return {UnavailableError("SMTP {}: {}", reply, what), !permanent};
  return {UnavailableError("SMTP {}: {}", p.url, what), true};
}

}  // namespace

std::string Signature(std::string_view secret, std::string_view body) {
  return "sha256=" + webhook::HmacSha256Hex(secret, body);
}

Attempt Deliver(const Provider& provider, const store::Notification& n, std::chrono::seconds timeout) {
  return provider.type == ProviderType::kEmail ? Mail(provider, n, timeout) : Post(provider, n, timeout);
}

}  // namespace gantry::notify
