// The mailer: templates, message building, the outbox, and delivery to a real SMTP server (the
// python3-aiosmtpd sink of scripts/test-services.sh, HARMAR_TEST_SMTP_URL / HARMAR_TEST_SMTP_DIR).
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <sodium.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <set>
#include <thread>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "notify/email_delivery.hpp"
#include "notify/email_module.hpp"
#include "notify/outbox.hpp"
#include "notify/outbox_mailer.hpp"
#include "notify/smtp.hpp"
#include "notify/templates.hpp"
#include "support/test_support.hpp"

namespace harmar::notify {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<store::Database> outbox_db() {
  static int n = 0;
  auto db = std::move(store::Database::open("sqlite://" + testing::temp_dir() + "/outbox" + std::to_string(++n) + ".db")).value();
  std::vector<store::ModuleMigrations> mods{{"notify", outbox::migrations()}, {"email", email_migrations()}};
  auto st = testing::run(store::migrate(*db, mods));
  EXPECT_TRUE(st.ok());
  return db;
}

std::string decode_base64(std::string_view b64) {
  std::string out(b64.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), b64.data(), b64.size(), "\r\n", &len,
                        nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return "<bad base64>";
  out.resize(len);
  return out;
}

// The decoded text/plain part of a message we built.
std::string text_part(const std::string& message) {
  auto start = message.find("Content-Type: text/plain");
  if (start == std::string::npos) return "";
  auto body = message.find("\r\n\r\n", start) + 4;
  auto end = message.find("--", body);
  return decode_base64(message.substr(body, end == std::string::npos ? std::string::npos : end - body));
}

TemplateVars vars_with_token(std::string token) {
  TemplateVars v;
  v["token"] = std::move(token);
  v["name"] = "Ann";
  v["public_url"] = "https://cloud.example.test";
  v["product"] = "HarmarCloud";
  v["to"] = "ann@example.test";
  return v;
}

TEST(MailTemplates, verify_email_links_to_the_public_url_with_the_token) {
  auto t = Templates::builtin();
  auto r = t.render("verify-email", vars_with_token("tok123"));
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->text.find("https://cloud.example.test/verify-email?token=tok123"), std::string::npos) << r->text;
  EXPECT_NE(r->html.find("href=\"https://cloud.example.test/verify-email?token=tok123\""), std::string::npos);
  EXPECT_NE(r->text.find("Hello Ann"), std::string::npos);
  EXPECT_EQ(r->subject, "Confirm your email address for HarmarCloud");
}

TEST(MailTemplates, the_redacted_copy_of_a_reset_mail_never_holds_the_token) {
  auto r = Templates::builtin().render("reset-password", vars_with_token("s3cret-token"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->sensitive);
  EXPECT_NE(r->text.find("s3cret-token"), std::string::npos);
  EXPECT_EQ(r->redacted_text.find("s3cret-token"), std::string::npos);
  EXPECT_NE(r->redacted_text.find("reset-password?token=[redacted]"), std::string::npos) << r->redacted_text;
}

TEST(MailTemplates, html_escapes_variables_and_text_keeps_them) {
  auto v = vars_with_token("t");
  v["name"] = "<b>Ann & Bob</b>";
  auto r = Templates::builtin().render("verify-email", v);
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->html.find("&lt;b&gt;Ann &amp; Bob&lt;/b&gt;"), std::string::npos);
  EXPECT_NE(r->text.find("<b>Ann & Bob</b>"), std::string::npos);
}

TEST(MailTemplates, an_unknown_template_is_not_found) {
  auto r = Templates::builtin().render("nope", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 404);
}

TEST(MailTemplates, a_directory_overrides_a_builtin_and_adds_new_ones) {
  auto dir = testing::temp_dir() + "/tmpl";
  fs::create_directories(dir);
  std::ofstream(dir + "/verify-email.subject") << "Welcome to {{product}}\n";
  std::ofstream(dir + "/verify-email.txt") << "Click {{public_url}}/v?t={{token}}";
  std::ofstream(dir + "/digest.subject") << "Your digest";
  std::ofstream(dir + "/digest.txt") << "{{count}} new things";
  auto t = Templates::load(dir);
  ASSERT_TRUE(t.ok()) << t.error().detail;
  auto r = t->render("verify-email", vars_with_token("abc"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->subject, "Welcome to HarmarCloud");
  EXPECT_EQ(r->text, "Click https://cloud.example.test/v?t=abc");
  EXPECT_EQ(r->redacted_text, "Click https://cloud.example.test/v?t=[redacted]");  // secrets stay declared
  TemplateVars dv;
  dv["count"] = "3";
  auto d = t->render("digest", dv);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->text, "3 new things");
  EXPECT_FALSE(d->sensitive);

  std::ofstream(dir + "/broken.subject") << "x";
  std::ofstream(dir + "/broken.txt") << "{{#open}} never closed";
  auto bad = Templates::load(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().detail.find("broken"), std::string::npos);
}

Mail sample_mail() {
  Mail m;
  m.to = "ann@example.test";
  m.subject = "Grüße aus Köln — 你好";
  m.text = "plain ünïcode text\nline two";
  m.html = "<p>html</p>";
  m.reply_to = "support@example.test";
  m.headers = {{"X-Harmar-Kind", "test"}};
  return m;
}

TEST(MailMessage, carries_headers_and_both_parts_base64_encoded) {
  auto msg = build_message(sample_mail(), "HarmarCloud <no-reply@example.test>", 1'700'000'000'000);
  ASSERT_TRUE(msg.ok()) << msg.error().detail;
  const std::string& m = *msg;
  EXPECT_NE(m.find("From: HarmarCloud <no-reply@example.test>\r\n"), std::string::npos);
  EXPECT_NE(m.find("To: ann@example.test\r\n"), std::string::npos);
  EXPECT_NE(m.find("Reply-To: support@example.test\r\n"), std::string::npos);
  EXPECT_NE(m.find("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), std::string::npos);
  EXPECT_NE(m.find("Subject: =?UTF-8?B?"), std::string::npos);
  EXPECT_NE(m.find("X-Harmar-Kind: test\r\n"), std::string::npos);
  EXPECT_NE(m.find("Message-ID: <"), std::string::npos);
  EXPECT_NE(m.find("@example.test>\r\n"), std::string::npos);
  EXPECT_NE(m.find("multipart/alternative"), std::string::npos);
  EXPECT_EQ(text_part(m), "plain ünïcode text\nline two");
  for (std::size_t pos = 0, next; (next = m.find("\r\n", pos)) != std::string::npos; pos = next + 2)
    EXPECT_LE(next - pos, 998u) << "line too long";
}

TEST(MailMessage, refuses_line_breaks_in_headers_and_bad_addresses) {
  auto m = sample_mail();
  m.subject = "hi\r\nBcc: victim@example.test";
  EXPECT_EQ(build_message(m, "a@example.test", 0).error().status, 422);
  m = sample_mail();
  m.to = "ann@example.test\r\nBcc: x@example.test";
  EXPECT_EQ(build_message(m, "a@example.test", 0).error().status, 422);
  m = sample_mail();
  m.headers = {{"Bcc", "x@example.test"}};
  EXPECT_EQ(build_message(m, "a@example.test", 0).error().status, 422);
  m = sample_mail();
  m.headers = {{"X-Ok", "v\nInjected: 1"}};
  EXPECT_EQ(build_message(m, "a@example.test", 0).error().status, 422);
  for (const char* bad : {"", "no-at", "a@b", "two@@example.test", "sp ace@example.test", "<a@example.test>", "a@.example.test"}) {
    m = sample_mail();
    m.to = bad;
    EXPECT_FALSE(build_message(m, "a@example.test", 0).ok()) << bad;
  }
  EXPECT_FALSE(build_message(sample_mail(), "not a mailbox", 0).ok());
}

TEST(MailMessage, address_of_reads_a_mailbox) {
  EXPECT_EQ(address_of("HarmarCloud <no-reply@example.test>").value_or(""), "no-reply@example.test");
  EXPECT_EQ(address_of("no-reply@example.test").value_or(""), "no-reply@example.test");
  EXPECT_FALSE(address_of("Name <broken").has_value());
  EXPECT_EQ(redact_url("smtp://user:pw@mail.example.test:587"), "smtp://mail.example.test:587");
  EXPECT_EQ(redact_url("smtps://mail.example.test"), "smtps://mail.example.test");
}

MailerSettings settings_for(std::optional<std::string> smtp_url) {
  MailerSettings s;
  s.from = "HarmarCloud <no-reply@example.test>";
  s.public_url = "https://cloud.example.test";
  s.attempts = 2;
  s.retry_base_ms = 0;  // a retry is due at once: the tests drive the attempts themselves
  s.retry_max_ms = 0;
  if (smtp_url) {
    SmtpSettings smtp;
    smtp.url = *smtp_url;
    smtp.from = s.from;
    smtp.timeout_ms = 5000;
    smtp.connect_timeout_ms = 2000;
    s.smtp = smtp;
  }
  return s;
}

std::vector<outbox::Row> outbox_rows(store::Database& db, const std::string& to) {
  auto rows = testing::run(outbox::recent(db, to, 10));
  EXPECT_TRUE(rows.ok());
  return rows.ok() ? *rows : std::vector<outbox::Row>{};
}

TEST(OutboxMailer, without_smtp_a_mail_is_logged_and_recorded_with_its_secret_redacted) {
  auto db = outbox_db();
  OutboxMailer mailer(settings_for(std::nullopt), *db, Templates::builtin());
  TemplateVars v;
  v["token"] = "the-secret-token";
  auto st = testing::run(mailer.send_template("reset-password", "ann@example.test", v));
  ASSERT_TRUE(st.ok()) << st.error().detail;
  auto rows = outbox_rows(*db, "ann@example.test");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, "logged");
  EXPECT_EQ(rows[0].kind, "reset-password");
  EXPECT_TRUE(rows[0].redacted);
  ASSERT_TRUE(rows[0].body.has_value());
  EXPECT_EQ(rows[0].body->find("the-secret-token"), std::string::npos);
  EXPECT_NE(rows[0].body->find("[redacted]"), std::string::npos);
  EXPECT_TRUE(rows[0].sent_at.has_value());
}

TEST(OutboxMailer, the_outbox_works_on_postgresql) {
  auto db = std::move(store::Database::open(testing::fresh_pg_schema_url("notify_outbox"))).value();
  std::vector<store::ModuleMigrations> mods{{"notify", outbox::migrations()}, {"email", email_migrations()}};
  auto migrated = testing::run(store::migrate(*db, mods));
  ASSERT_TRUE(migrated.ok()) << migrated.error().detail;
  OutboxMailer mailer(settings_for(std::nullopt), *db, Templates::builtin());
  TemplateVars v;
  v["token"] = "pg-secret-token";
  ASSERT_TRUE(testing::run(mailer.send_template("verify-email", "pg@example.test", v)).ok());
  auto rows = outbox_rows(*db, "pg@example.test");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, "logged");
  EXPECT_TRUE(rows[0].redacted);
  EXPECT_EQ(rows[0].body->find("pg-secret-token"), std::string::npos);
  auto purged = testing::run(outbox::purge(*db, now_ms() + 1000));
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 1);
}

TEST(OutboxMailer, an_invalid_mail_is_refused_and_not_recorded) {
  auto db = outbox_db();
  OutboxMailer mailer(settings_for(std::nullopt), *db, Templates::builtin());
  Mail m;
  m.to = "not-an-address";
  m.subject = "x";
  m.text = "y";
  auto st = testing::run(mailer.send(m));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().status, 422);
  EXPECT_TRUE(outbox_rows(*db, "").empty());
}

// The sink's file for a mail to `to`, waiting up to 10 s.
std::optional<std::string> received_by_sink(const std::string& to) {
  std::string dir = testing::require_env("HARMAR_TEST_SMTP_DIR");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir + "/new", ec)) {
      std::ifstream in(e.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      if (ss.str().find("X-Envelope-To: " + to + "\r\n") != std::string::npos) return ss.str();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return std::nullopt;
}

std::string unique_address(const char* what) { return std::string(what) + "-" + random_hex(6) + "@example.test"; }

// A mailer and the delivery of one node over `db`, driven by hand (deliver_one) instead of workers.
struct Queue {
  std::shared_ptr<OutboxMailer> mailer;
  std::shared_ptr<Delivery> delivery;
};

Queue queue_for(store::Database& db, MailerSettings settings) {
  Queue q;
  q.mailer = std::make_shared<OutboxMailer>(std::move(settings), db, Templates::builtin());
  q.delivery = std::make_shared<Delivery>(db, q.mailer, nullptr, DeliveryOptions{});
  return q;
}

bool deliver(Queue& q) {
  auto one = testing::run(q.delivery->deliver_one());
  EXPECT_TRUE(one.ok()) << (one.ok() ? "" : one.error().detail);
  return one.ok() && *one;
}

TEST(OutboxMailer, smtp_delivers_to_a_real_server_and_the_outbox_says_sent) {
  auto db = outbox_db();
  auto q = queue_for(*db, settings_for(testing::require_env("HARMAR_TEST_SMTP_URL")));
  std::string to = unique_address("verify");
  TemplateVars v;
  v["token"] = "tok-" + random_hex(8);
  v["name"] = "Ann";
  auto st = testing::run(q.mailer->send_template("verify-email", to, v));
  ASSERT_TRUE(st.ok()) << st.error().detail;
  auto queued = outbox_rows(*db, to);
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].status, "queued");
  ASSERT_TRUE(deliver(q));
  EXPECT_FALSE(deliver(q)) << "nothing else is due";
  auto got = received_by_sink(to);
  ASSERT_TRUE(got.has_value()) << "the SMTP sink received nothing for " << to;
  EXPECT_NE(got->find("X-Envelope-From: no-reply@example.test"), std::string::npos);
  EXPECT_NE(got->find("Subject: Confirm your email address for HarmarCloud"), std::string::npos);
  EXPECT_NE(text_part(*got).find("https://cloud.example.test/verify-email?token=" + v["token"]), std::string::npos);
  auto rows = outbox_rows(*db, to);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, "sent");
  EXPECT_EQ(rows[0].attempts, 1);
  EXPECT_FALSE(rows[0].error.has_value());
  EXPECT_EQ(rows[0].body->find(v["token"]), std::string::npos);
}

std::optional<std::string> sealed_message(store::Database& db, const std::string& id) {
  auto rows = testing::run(db.query("SELECT message FROM outbox WHERE id = $1", {id}));
  EXPECT_TRUE(rows.ok());
  if (!rows.ok() || rows->empty()) return std::nullopt;
  return rows->front().opt_text(0);
}

TEST(OutboxMailer, a_queued_message_is_sealed_at_rest_and_dropped_once_delivered) {
  auto db = outbox_db();
  auto q = queue_for(*db, settings_for(testing::require_env("HARMAR_TEST_SMTP_URL")));
  std::string to = unique_address("sealed");
  TemplateVars v;
  v["token"] = "reset-" + random_hex(8);
  ASSERT_TRUE(testing::run(q.mailer->send_template("reset-password", to, v)).ok());
  auto rows = outbox_rows(*db, to);
  ASSERT_EQ(rows.size(), 1u);
  auto sealed = sealed_message(*db, rows[0].id);
  ASSERT_TRUE(sealed.has_value());
  EXPECT_EQ(sealed->find(v["token"]), std::string::npos) << "the queued message holds the token in clear";
  EXPECT_EQ(sealed->find("Subject"), std::string::npos);
  ASSERT_TRUE(deliver(q));
  EXPECT_FALSE(sealed_message(*db, rows[0].id).has_value()) << "a sent mail keeps no message";
}

uint16_t closed_port() {
  asio::io_context ctx;
  asio::ip::tcp::acceptor a(ctx, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();  // closed when `a` goes
}

TEST(OutboxMailer, an_unreachable_server_is_retried_then_the_mail_is_dead) {
  auto db = outbox_db();
  auto q = queue_for(*db, settings_for("smtp://127.0.0.1:" + std::to_string(closed_port())));
  Mail m;
  m.to = unique_address("down");
  m.subject = "hello";
  m.text = "body";
  ASSERT_TRUE(testing::run(q.mailer->send(m)).ok()) << "sending only queues";
  ASSERT_TRUE(deliver(q));
  auto rows = outbox_rows(*db, m.to);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, "queued") << "a refused connection is transient";
  EXPECT_EQ(rows[0].attempts, 1);
  EXPECT_TRUE(rows[0].error.has_value());
  ASSERT_TRUE(rows[0].next_at.has_value());
  ASSERT_TRUE(deliver(q));
  rows = outbox_rows(*db, m.to);
  EXPECT_EQ(rows[0].status, "dead");
  EXPECT_EQ(rows[0].attempts, 2);
  EXPECT_EQ(rows[0].body.value_or(""), "body");
  EXPECT_FALSE(sealed_message(*db, rows[0].id).has_value());
  EXPECT_FALSE(deliver(q)) << "a dead mail is never tried again";
  auto dead = testing::run(outbox::list(*db, "dead", std::nullopt, 10));
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].id, rows[0].id);
}

TEST(OutboxMailer, the_backoff_doubles_and_is_capped) {
  auto db = outbox_db();
  auto s = settings_for(std::nullopt);
  s.retry_base_ms = 1000;
  s.retry_max_ms = 5000;
  auto q = queue_for(*db, s);
  for (int i = 0; i < 20; ++i) {
    int64_t second = q.delivery->backoff_ms(2), third = q.delivery->backoff_ms(3), late = q.delivery->backoff_ms(10);
    EXPECT_GE(second, 800);
    EXPECT_LE(second, 1200);
    EXPECT_GE(third, 1600);
    EXPECT_LE(third, 2400);
    EXPECT_GE(late, 4000);
    EXPECT_LE(late, 6000);
  }
}

TEST(OutboxMailer, a_mail_whose_node_died_mid_send_is_taken_over_and_the_dead_node_cannot_settle_it) {
  auto db = outbox_db();
  auto q = queue_for(*db, settings_for(testing::require_env("HARMAR_TEST_SMTP_URL")));
  std::string to = unique_address("takeover");
  Mail m;
  m.to = to;
  m.subject = "survives a crash";
  m.text = "body";
  ASSERT_TRUE(testing::run(q.mailer->send(m)).ok());
  // Another node claims it with a lease that has already run out, then "dies".
  auto claimed = testing::run(outbox::claim(*db, "dead-node", now_ms(), -1, 10));
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 1u);
  ASSERT_TRUE(deliver(q)) << "the expired lease is claimed again";
  ASSERT_TRUE(received_by_sink(to).has_value());
  auto rows = outbox_rows(*db, to);
  EXPECT_EQ(rows[0].status, "sent");
  EXPECT_EQ(rows[0].attempts, 2);
  auto late = testing::run(outbox::settle(*db, rows[0].id, "dead-node", 1, "failed", std::string("late"), std::nullopt,
                                          std::nullopt));
  ASSERT_TRUE(late.ok());
  EXPECT_FALSE(*late) << "a node whose lease was taken over changes nothing";
  EXPECT_EQ(outbox_rows(*db, to)[0].status, "sent");
}

void claims_are_exclusive(store::Database& db) {
  auto q = queue_for(db, settings_for("smtp://127.0.0.1:1"));
  for (int i = 0; i < 6; ++i) {
    Mail m;
    m.to = unique_address("excl");
    m.subject = "one of six";
    m.text = "body";
    ASSERT_TRUE(testing::run(q.mailer->send(m)).ok());
  }
  auto a = testing::run(outbox::claim(db, "node-a", now_ms(), 60'000, 4));
  auto b = testing::run(outbox::claim(db, "node-b", now_ms(), 60'000, 4));
  auto c = testing::run(outbox::claim(db, "node-c", now_ms(), 60'000, 4));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->size(), 4u);
  EXPECT_EQ(b->size(), 2u);
  EXPECT_EQ(c->size(), 0u) << "a leased mail is nobody else's";
  std::set<std::string> ids;
  for (const auto& x : *a) ids.insert(x.id);
  for (const auto& x : *b) ids.insert(x.id);
  EXPECT_EQ(ids.size(), 6u);
}

TEST(OutboxMailer, claims_are_exclusive_on_sqlite) {
  auto db = outbox_db();
  claims_are_exclusive(*db);
}

TEST(OutboxMailer, claims_are_exclusive_on_postgresql) {
  auto db = std::move(store::Database::open(testing::fresh_pg_schema_url("notify_claims"))).value();
  std::vector<store::ModuleMigrations> mods{{"notify", outbox::migrations()}, {"email", email_migrations()}};
  ASSERT_TRUE(testing::run(store::migrate(*db, mods)).ok());
  claims_are_exclusive(*db);
}

TEST(OutboxMailer, starttls_required_refuses_a_server_that_does_not_offer_it) {
  auto db = outbox_db();
  auto s = settings_for(testing::require_env("HARMAR_TEST_SMTP_URL"));
  s.smtp->starttls = StartTls::Required;
  auto q = queue_for(*db, s);
  Mail m;
  m.to = unique_address("tls");
  m.subject = "must not travel in clear";
  m.text = "body";
  ASSERT_TRUE(testing::run(q.mailer->send(m)).ok());
  ASSERT_TRUE(deliver(q));
  auto rows = outbox_rows(*db, m.to);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, "failed");
  EXPECT_EQ(rows[0].attempts, 1) << "a missing STARTTLS is not transient";
  std::string dir = testing::require_env("HARMAR_TEST_SMTP_DIR");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir + "/new", ec)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(ss.str().find(m.to), std::string::npos) << "the sink received the mail in clear";
  }
}

}  // namespace
}  // namespace harmar::notify
