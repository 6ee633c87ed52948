// Inbound MIME parsing (GMime) on the fixtures in tests/fixtures/mime and on generated bombs: each
// good message gives its sender, recipients, references and UTF-8 text; each bad or hostile one
// gives its 4xx code, never a crash.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "notify/mime.hpp"

namespace harmar::notify {
namespace {

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(HARMAR_MIME_FIXTURES) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Mime, a_plain_reply_gives_its_sender_recipients_references_and_text) {
  auto m = parse_mime(fixture("plain.eml"));
  ASSERT_TRUE(m.ok()) << m.error().code << ": " << m.error().detail;
  EXPECT_EQ(m->from, "ann@example.test");
  ASSERT_EQ(m->recipients.size(), 1u);
  EXPECT_EQ(m->recipients[0], "notify+TOKEN@example.test");
  EXPECT_EQ(m->subject, "Re: [HarmarCloud] Task failed: shell on build-01");
  EXPECT_EQ(m->message_id, "reply-1@example.test");
  ASSERT_EQ(m->references.size(), 1u);
  EXPECT_EQ(m->references[0], "TOKEN.abc123@example.test");
  EXPECT_NE(m->text.find("I restarted the disk; please retry."), std::string::npos);
}

TEST(Mime, multipart_alternative_prefers_the_plain_part_decoded_to_utf8) {
  auto m = parse_mime(fixture("alternative_utf8.eml"));
  ASSERT_TRUE(m.ok()) << m.error().detail;
  EXPECT_EQ(m->subject, "Caf\u00e9 r\u00e9ponse");
  EXPECT_EQ(m->from, "elodie@example.test");
  EXPECT_NE(m->text.find("Caf\u00e9 is open \u2014 r\u00e9essayez."), std::string::npos) << m->text;
  EXPECT_EQ(m->text.find("<b>"), std::string::npos);
  EXPECT_EQ(m->parts, 2);
}

TEST(Mime, a_latin1_quoted_printable_body_becomes_utf8) {
  auto m = parse_mime(fixture("latin1_qp.eml"));
  ASSERT_TRUE(m.ok()) << m.error().detail;
  EXPECT_NE(m->text.find("Gr\u00fc\u00dfe aus K\u00f6ln"), std::string::npos) << m->text;
  EXPECT_EQ(m->subject, "Gr\u00fc\u00dfe");
}

TEST(Mime, an_html_only_mail_gives_its_text_without_tags) {
  auto m = parse_mime(fixture("html_only.eml"));
  ASSERT_TRUE(m.ok()) << m.error().detail;
  EXPECT_NE(m->text.find("Looks fine now."), std::string::npos) << m->text;
}

TEST(Mime, attachments_and_attached_messages_are_not_the_text) {
  auto m = parse_mime(fixture("nested_with_attachment.eml"));
  ASSERT_TRUE(m.ok()) << m.error().detail;
  EXPECT_NE(m->text.find("See the attached log."), std::string::npos);
  EXPECT_EQ(m->text.find("attachment"), std::string::npos) << m->text;
  EXPECT_EQ(m->text.find("forwarded"), std::string::npos) << m->text;
  EXPECT_GE(m->depth, 2);
}

void expect_refused(const Result<ParsedMail>& m, int status, const std::string& code) {
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().status, status);
  EXPECT_EQ(m.error().code, code) << m.error().detail;
  EXPECT_FALSE(m.error().detail.empty());
}

TEST(Mime, malformed_fixtures_are_refused_with_their_code) {
  expect_refused(parse_mime(fixture("malformed_no_headers.eml")), 422, "mime_malformed");
  expect_refused(parse_mime(fixture("malformed_no_from.eml")), 422, "mime_malformed");
  expect_refused(parse_mime(fixture("bad_charset.eml")), 422, "mime_bad_charset");
  expect_refused(parse_mime(fixture("bad_utf8.eml")), 422, "mime_bad_encoding");
  expect_refused(parse_mime(""), 422, "mime_empty");
}

TEST(Mime, a_truncated_multipart_with_broken_base64_does_not_crash) {
  auto m = parse_mime(fixture("truncated_multipart.eml"));
  // GMime is lenient with an unterminated multipart and skips bad base64 characters: what
  // matters is an answer, and valid UTF-8 text if it is accepted.
  if (m.ok()) EXPECT_EQ(m->from, "x@example.test");
  else EXPECT_EQ(m.error().status, 422);
}

std::string head(const std::string& extra = "") {
  return "From: x@example.test\r\nTo: y@example.test\r\nSubject: bomb\r\n" + extra;
}

TEST(Mime, deep_nesting_is_refused) {
  std::string m = head("Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
  for (int i = 1; i <= 20; ++i)
    m += "--b" + std::to_string(i - 1) + "\r\nContent-Type: multipart/mixed; boundary=\"b" + std::to_string(i) + "\"\r\n\r\n";
  m += "--b20\r\nContent-Type: text/plain\r\n\r\ndeep\r\n";
  expect_refused(parse_mime(m), 422, "mime_too_complex");
}

TEST(Mime, a_message_rfc822_tower_is_refused_before_gmime_recurses_into_it) {
  std::string m = head();
  for (int i = 0; i < 100000; ++i) m += "Content-Type: message/rfc822\r\n\r\nFrom: x@example.test\r\n";
  m += "\r\nbottom\r\n";
  expect_refused(parse_mime(m), 422, "mime_too_complex");
}

TEST(Mime, too_many_parts_are_refused) {
  std::string m = head("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
  for (int i = 0; i < 150; ++i) m += "--b\r\nContent-Type: text/plain\r\n\r\npart\r\n";
  m += "--b--\r\n";
  MimeLimits lim;
  lim.max_parts = 100;
  expect_refused(parse_mime(m, lim), 422, "mime_too_complex");
  lim.max_parts = 200;
  EXPECT_TRUE(parse_mime(m, lim).ok());
}

TEST(Mime, huge_headers_are_refused) {
  std::string big = head("X-Filler: " + std::string(100'000, 'a') + "\r\n\r\nbody\r\n");
  expect_refused(parse_mime(big), 422, "mime_headers_too_large");
  std::string many = head();
  for (int i = 0; i < 1000; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  many += "\r\nbody\r\n";
  expect_refused(parse_mime(many), 422, "mime_too_complex");
  std::string part_headers = head("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nX-Big: " +
                                  std::string(70'000, 'h') + "\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n");
  expect_refused(parse_mime(part_headers), 422, "mime_headers_too_large");
}

TEST(Mime, a_message_over_the_size_limit_is_too_large) {
  MimeLimits lim;
  lim.max_bytes = 1000;
  expect_refused(parse_mime(head("\r\n" + std::string(2000, 'x')), lim), 413, "payload_too_large");
}

TEST(Mime, long_text_is_cut_at_a_character) {
  MimeLimits lim;
  lim.max_text_bytes = 11;
  auto m = parse_mime(head("Content-Type: text/plain; charset=utf-8\r\n\r\n\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\r\n"), lim);
  ASSERT_TRUE(m.ok()) << m.error().detail;
  EXPECT_TRUE(m->text_truncated);
  EXPECT_EQ(m->text, "\u00e9\u00e9\u00e9\u00e9\u00e9");
}

}  // namespace
}  // namespace harmar::notify
