#include "notify/smtp.hpp"

#include <curl/curl.h>
#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>

#include "core/clock.hpp"
#include "core/ids.hpp"

namespace harmar::notify {
namespace {

bool has_line_break(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

bool is_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

std::string base64(std::string_view in) {
  if (in.empty()) return {};
  std::string out(sodium_base64_encoded_len(in.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(in.data()), in.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

// Base64 in lines of 76 characters (RFC 2045), CRLF after each.
std::string base64_lines(std::string_view in) {
  std::string b = base64(in), out;
  for (std::size_t i = 0; i < b.size(); i += 76) {
    out.append(b, i, 76);
    out += "\r\n";
  }
  return out;
}

// RFC 2047 encoded words for a header value that is not plain ASCII. Each word holds whole UTF-8
// characters and stays under 75 characters.
std::string encode_header_value(std::string_view v) {
  if (is_ascii(v)) return std::string(v);
  std::string out;
  std::size_t i = 0;
  while (i < v.size()) {
    std::size_t end = i;
    while (end < v.size()) {
      std::size_t next = end + 1;
      while (next < v.size() && (static_cast<unsigned char>(v[next]) & 0xC0) == 0x80) ++next;
      if (next - i > 45) break;  // 45 bytes → 60 base64 characters
      end = next;
    }
    if (end == i) end = v.size();  // a malformed sequence: take the rest
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + base64(v.substr(i, end - i)) + "?=";
    i = end;
  }
  return out;
}

// "Name <addr>" with the name encoded when needed.
std::string encode_mailbox(std::string_view from) {
  auto lt = from.rfind('<');
  if (lt == std::string_view::npos) return std::string(from);
  std::string_view name = from.substr(0, lt);
  while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
  if (name.empty()) return std::string(from.substr(lt));
  if (is_ascii(name)) {
    bool plain = true;
    for (char c : name)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == ' ' || c == '-' || c == '.' || c == '_')) plain = false;
    if (plain) return std::string(name) + " " + std::string(from.substr(lt));
    std::string quoted = "\"";
    for (char c : name) {
      if (c == '"' || c == '\\') quoted.push_back('\\');
      quoted.push_back(c);
    }
    return quoted + "\" " + std::string(from.substr(lt));
  }
  return encode_header_value(name) + " " + std::string(from.substr(lt));
}

std::string domain_of(std::string_view addr) {
  auto at = addr.rfind('@');
  return at == std::string_view::npos ? "localhost" : std::string(addr.substr(at + 1));
}

std::string rfc5322_date(int64_t now_ms) {
  std::string d = format_http_date(now_ms / 1000);  // "Wed, 25 Nov 2026 19:01:31 GMT"
  if (d.size() > 4 && d.compare(d.size() - 4, 4, " GMT") == 0) d.replace(d.size() - 4, 4, " +0000");
  return d;
}

std::string host_of(std::string_view url) {
  auto scheme = url.find("://");
  std::string_view rest = scheme == std::string_view::npos ? url : url.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  if (!rest.empty() && rest.front() == '[') return std::string(rest.substr(0, rest.find(']') + 1));
  return std::string(rest.substr(0, rest.find(':')));
}

bool loopback(std::string_view host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]";
}

struct Reader {
  const std::string* data;
  std::size_t pos = 0;
};

size_t read_message(char* buf, size_t size, size_t n, void* user) {
  auto* r = static_cast<Reader*>(user);
  size_t len = std::min(size * n, r->data->size() - r->pos);
  std::memcpy(buf, r->data->data() + r->pos, len);
  r->pos += len;
  return len;
}

}  // namespace

bool valid_address(std::string_view a) {
  if (a.size() < 3 || a.size() > 254) return false;
  auto at = a.find('@');
  if (at == std::string_view::npos || at == 0 || at != a.rfind('@') || at > 64) return false;
  for (unsigned char c : a)
    if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' || c == '(' || c == ')' ||
        c == '[' || c == ']' || c == '\\')
      return false;
  std::string_view domain = a.substr(at + 1);
  if (domain.empty() || domain.front() == '.' || domain.back() == '.' || domain.find("..") != std::string_view::npos)
    return false;
  return domain.find('.') != std::string_view::npos || domain == "localhost";
}

std::optional<std::string> address_of(std::string_view from) {
  std::string_view a = from;
  if (auto lt = from.rfind('<'); lt != std::string_view::npos) {
    auto gt = from.find('>', lt);
    if (gt == std::string_view::npos || gt + 1 != from.size()) return std::nullopt;
    a = from.substr(lt + 1, gt - lt - 1);
  }
  if (!valid_address(a)) return std::nullopt;
  return std::string(a);
}

Result<std::string> build_message(const Mail& mail, const std::string& from, int64_t now_ms) {
  std::vector<FieldError> bad;
  if (!valid_address(mail.to)) bad.push_back({"to", "is not an email address"});
  if (!mail.reply_to.empty() && !valid_address(mail.reply_to)) bad.push_back({"reply_to", "is not an email address"});
  if (has_line_break(mail.subject) || mail.subject.size() > 998) bad.push_back({"subject", "must be one line"});
  if (mail.text.empty()) bad.push_back({"text", "is required"});
  if (mail.message_id.size() > 128 ||
      std::any_of(mail.message_id.begin(), mail.message_id.end(),
                  [](unsigned char c) { return !(std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '+'); }))
    bad.push_back({"message_id", "is not a Message-ID local part"});
  for (const auto& [k, v] : mail.headers) {
    bool name_ok = !k.empty() && k.size() <= 76;
    for (unsigned char c : k)
      if (!(std::isalnum(c) || c == '-')) name_ok = false;
    static constexpr const char* kReserved[] = {"from", "to", "cc", "bcc", "subject", "date", "message-id",
                                                "mime-version", "content-type", "content-transfer-encoding",
                                                "reply-to", "sender", "return-path"};
    for (const char* r : kReserved)
      if (name_ok && k.size() == std::strlen(r) && std::equal(k.begin(), k.end(), r, [](char x, char y) {
            return std::tolower(static_cast<unsigned char>(x)) == y;
          }))
        name_ok = false;
    if (!name_ok || has_line_break(v) || v.size() > 998) bad.push_back({"headers." + k, "is not an allowed header"});
  }
  auto from_addr = address_of(from);
  if (!from_addr || has_line_break(from)) bad.push_back({"smtp.from", "is not a mailbox (Name <addr> or addr)"});
  if (!bad.empty()) return Error::validation("the mail cannot be sent as it is", std::move(bad));

  std::string m;
  m += "Date: " + rfc5322_date(now_ms) + "\r\n";
  m += "From: " + encode_mailbox(from) + "\r\n";
  m += "To: " + mail.to + "\r\n";
  if (!mail.reply_to.empty()) m += "Reply-To: " + mail.reply_to + "\r\n";
  m += "Subject: " + encode_header_value(mail.subject) + "\r\n";
  m += "Message-ID: <" + (mail.message_id.empty() ? new_id() : mail.message_id) + "@" + domain_of(*from_addr) + ">\r\n";
  for (const auto& [k, v] : mail.headers) m += k + ": " + encode_header_value(v) + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  if (mail.html.empty()) {
    m += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    m += base64_lines(mail.text);
    return m;
  }
  std::string boundary = "=_harmar_" + random_hex(12);
  m += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n";
  m += "--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n";
  m += base64_lines(mail.text);
  m += "--" + boundary + "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n";
  m += base64_lines(mail.html);
  m += "--" + boundary + "--\r\n";
  return m;
}

std::string redact_url(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  auto rest_start = scheme + 3;
  auto end = url.find_first_of("/?#", rest_start);
  auto at = url.substr(0, end).rfind('@');
  if (at == std::string_view::npos || at < rest_start) return std::string(url);
  return std::string(url.substr(0, rest_start)) + std::string(url.substr(at + 1));
}

SmtpOutcome smtp_send_sync(const SmtpSettings& s, const std::string& to, const std::string& message) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  SmtpOutcome out;
  auto from_addr = address_of(s.from);
  if (!from_addr) {
    out.error = "smtp.from is not a valid mailbox";
    return out;
  }
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    out.error = "curl_easy_init failed";
    return out;
  }
  CURL* c = curl.get();
  std::string mail_from = "<" + *from_addr + ">";
  std::string rcpt = "<" + to + ">";
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> rcpts(curl_slist_append(nullptr, rcpt.c_str()),
                                                                    curl_slist_free_all);
  Reader reader{&message};
  char errbuf[CURL_ERROR_SIZE] = {0};
  bool tls_required = s.starttls == StartTls::Required || (s.starttls == StartTls::Auto && !loopback(host_of(s.url)));

  curl_easy_setopt(c, CURLOPT_URL, s.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USE_SSL, tls_required ? static_cast<long>(CURLUSESSL_ALL) : static_cast<long>(CURLUSESSL_TRY));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!s.user.empty()) {
    curl_easy_setopt(c, CURLOPT_USERNAME, s.user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, s.password.c_str());
  }
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts.get());
  curl_easy_setopt(c, CURLOPT_READFUNCTION, read_message);
  curl_easy_setopt(c, CURLOPT_READDATA, &reader);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(s.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(s.timeout_ms));
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);

  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) {
    out.ok = true;
    return out;
  }
  long reply = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply);
  out.error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  if (reply >= 400 && reply < 500) {
    out.transient = true;
  } else if (reply >= 500) {
    out.transient = false;
  } else {
    switch (rc) {
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_OPERATION_TIMEDOUT:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
        out.transient = true;
        break;
      default:
        out.transient = false;
    }
  }
  return out;
}

}  // namespace harmar::notify
