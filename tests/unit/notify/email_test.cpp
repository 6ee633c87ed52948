// The email module's parts without HTTP: keys and reply tokens, configs with sealed SMTP
// passwords, the notification templates, and what a reply adds as a note.
#include <gtest/gtest.h>
#include <sodium.h>

#include <boost/json.hpp>

#include "core/ids.hpp"
#include "notify/email_config.hpp"
#include "notify/email_crypto.hpp"
#include "notify/email_module.hpp"
#include "notify/incoming.hpp"
#include "notify/outbox.hpp"
#include "notify/outbox_mailer.hpp"
#include "notify/smtp.hpp"
#include "notify/templates.hpp"
#include "support/test_support.hpp"

namespace harmar::notify {
namespace {

std::shared_ptr<const EmailCrypto> crypto(unsigned char seed = 7) {
  Key32 a{}, b{};
  a.fill(seed);
  b.fill(static_cast<unsigned char>(seed + 1));
  return std::make_shared<const EmailCrypto>(a, b);
}

TEST(EmailCrypto, sealed_text_opens_only_with_the_same_key_and_untampered) {
  auto c = crypto();
  std::string sealed = c->seal("hunter2");
  EXPECT_EQ(sealed.find("hunter2"), std::string::npos);
  EXPECT_NE(c->seal("hunter2"), sealed) << "a fresh nonce each time";
  EXPECT_EQ(c->open(sealed).value_or(""), "hunter2");
  EXPECT_FALSE(crypto(9)->open(sealed).has_value());
  std::string tampered = sealed;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(c->open(tampered).has_value());
  EXPECT_FALSE(c->open("not base64 !!").has_value());
  EXPECT_FALSE(c->open("").has_value());
}

TEST(EmailCrypto, a_reply_token_names_its_target_and_cannot_be_forged) {
  auto c = crypto();
  std::string id = new_id();
  auto token = c->reply_token('t', id);
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->size(), 53u);
  EXPECT_LE(("notify+" + *token).size(), 64u) << "fits a local part";
  auto target = c->verify_token(*token);
  ASSERT_TRUE(target.has_value());
  EXPECT_EQ(target->kind, 't');
  EXPECT_EQ(target->id, id);
  std::string upper = *token;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_TRUE(c->verify_token(upper).has_value()) << "mail systems may change the case of a local part";
  std::string other_kind = *token;
  other_kind[0] = 'd';
  EXPECT_FALSE(c->verify_token(other_kind).has_value());
  std::string other_id = *token;
  other_id[5] = other_id[5] == '0' ? '1' : '0';
  EXPECT_FALSE(c->verify_token(other_id).has_value());
  EXPECT_FALSE(crypto(9)->verify_token(*token).has_value()) << "another server's key";
  EXPECT_FALSE(c->verify_token("").has_value());
  EXPECT_FALSE(c->reply_token('t', "not-a-uuid").has_value());
}

TEST(EmailCrypto, secrets_compare_by_value_whatever_their_length) {
  EXPECT_TRUE(secrets_equal("s3cret", "s3cret"));
  EXPECT_FALSE(secrets_equal("s3cret", "s3cres"));
  EXPECT_FALSE(secrets_equal("s3cret", "s3cret-longer"));
  EXPECT_FALSE(secrets_equal("", "x"));
}

std::unique_ptr<store::Database> email_db() {
  static int n = 0;
  auto db = std::move(store::Database::open("sqlite://" + testing::temp_dir() + "/email" + std::to_string(++n) + ".db")).value();
  std::vector<store::ModuleMigrations> mods{{"notify", outbox::migrations()}, {"email", email_migrations()}};
  EXPECT_TRUE(testing::run(store::migrate(*db, mods)).ok());
  return db;
}

void configs_keep_passwords_sealed(store::Database& db) {
  EmailConfigs configs(db, crypto());
  EmailConfig c;
  c.user_id = new_id();
  c.device_id = new_id();
  c.recipients = {"ops@example.test"};
  c.kinds = {"task-failed"};
  SmtpOverride o;
  o.host = "mail.example.test";
  o.port = 2525;
  o.user = "bot";
  o.password = "pa55-w0rd-xyz";
  c.smtp = o;
  auto saved = testing::run(configs.put(c));
  ASSERT_TRUE(saved.ok()) << saved.error().detail;
  std::string json = boost::json::serialize(saved->to_json());
  EXPECT_EQ(json.find("pa55-w0rd-xyz"), std::string::npos) << json;
  EXPECT_NE(json.find("\"password_set\":true"), std::string::npos) << json;
  auto raw = testing::run(db.query("SELECT smtp, smtp_password FROM email_configs"));
  ASSERT_TRUE(raw.ok());
  ASSERT_EQ(raw->size(), 1u);
  EXPECT_EQ(raw->front().text(0).find("pa55"), std::string::npos);
  EXPECT_EQ(raw->front().text(1).find("pa55"), std::string::npos);
  auto back = testing::run(configs.get(c.user_id, c.device_id));
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->smtp->password.value_or(""), "pa55-w0rd-xyz") << "opens for delivery";
  EXPECT_EQ((*back)->id, saved->id);

  // Replacing the config without a password keeps the stored one.
  c.smtp->password.reset();
  c.recipients = {"oncall@example.test"};
  auto again = testing::run(configs.put(c));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, saved->id);
  back = testing::run(configs.get(c.user_id, c.device_id));
  EXPECT_EQ((*back)->smtp->password.value_or(""), "pa55-w0rd-xyz");
  EXPECT_EQ((*back)->recipients, std::vector<std::string>{"oncall@example.test"});

  // A device without a config of its own falls back to the user's default.
  EmailConfig def;
  def.user_id = c.user_id;
  def.recipients = {"me@example.test"};
  def.kinds = notification_kinds();
  ASSERT_TRUE(testing::run(configs.put(def)).ok());
  auto other = testing::run(configs.resolve(c.user_id, new_id()));
  ASSERT_TRUE(other.ok() && other->has_value());
  EXPECT_EQ((*other)->recipients, std::vector<std::string>{"me@example.test"});
  auto mine = testing::run(configs.resolve(c.user_id, c.device_id));
  EXPECT_EQ((*mine)->recipients, std::vector<std::string>{"oncall@example.test"});
  EXPECT_TRUE((*mine)->wants("task-failed"));
  EXPECT_FALSE((*mine)->wants("task-created"));
}

TEST(EmailConfigs, smtp_passwords_are_sealed_masked_and_kept_on_update_sqlite) {
  auto db = email_db();
  configs_keep_passwords_sealed(*db);
}

TEST(EmailConfigs, smtp_passwords_are_sealed_masked_and_kept_on_update_postgresql) {
  auto db = std::move(store::Database::open(testing::fresh_pg_schema_url("email_configs"))).value();
  std::vector<store::ModuleMigrations> mods{{"notify", outbox::migrations()}, {"email", email_migrations()}};
  ASSERT_TRUE(testing::run(store::migrate(*db, mods)).ok());
  configs_keep_passwords_sealed(*db);
}

TEST(EmailConfigs, an_override_becomes_an_smtp_url) {
  SmtpSettings base;
  base.from = "HarmarCloud <no-reply@example.test>";
  base.timeout_ms = 1234;
  SmtpOverride o;
  o.host = "mail.example.test";
  o.port = 465;
  o.security = "tls";
  auto s = smtp_settings(o, base);
  EXPECT_EQ(s.url, "smtps://mail.example.test:465");
  EXPECT_EQ(s.timeout_ms, 1234);
  EXPECT_EQ(s.from, base.from);
  o.security = "starttls";
  o.host = "::1";
  o.from = "ops <ops@example.test>";
  s = smtp_settings(o, base);
  EXPECT_EQ(s.url, "smtp://[::1]:465");
  EXPECT_EQ(s.from, "ops <ops@example.test>");
}

OutboxMailer mailer_for(store::Database& db, std::string reply_address) {
  MailerSettings s;
  s.from = "HarmarCloud <no-reply@example.test>";
  s.public_url = "https://cloud.example.test";
  s.reply_address = std::move(reply_address);
  OutboxMailer m(s, db, Templates::builtin());
  MailerRouting r;
  r.crypto = crypto();
  m.attach(r);
  return m;
}

TEST(NotificationTemplates, every_kind_renders_text_html_and_a_subject_with_its_vars) {
  auto db = email_db();
  auto mailer = mailer_for(*db, "notify@example.test");
  TemplateVars v;
  v["task_id"] = new_id();
  v["task_type"] = "shell";
  v["task_status"] = "failed";
  v["error"] = "exit status 3 <oops>";
  v["device_name"] = "build-01";
  v["title"] = "Maintenance tonight";
  v["body"] = "We upgrade at 22:00.";
  for (const auto& kind : notification_kinds()) {
    auto m = mailer.render(kind, "ann@example.test", v);
    ASSERT_TRUE(m.ok()) << kind << ": " << m.error().detail;
    EXPECT_FALSE(m->subject.empty()) << kind;
    EXPECT_FALSE(m->text.empty()) << kind;
    EXPECT_FALSE(m->html.empty()) << kind;
    EXPECT_EQ(m->kind, kind);
    EXPECT_TRUE(build_message(*m, "HarmarCloud <no-reply@example.test>", 0).ok()) << kind;
  }
  auto failed = mailer.render("task-failed", "ann@example.test", v);
  EXPECT_EQ(failed->subject, "[HarmarCloud] Task failed: shell on build-01");
  EXPECT_NE(failed->text.find("exit status 3 <oops>"), std::string::npos);
  EXPECT_NE(failed->html.find("exit status 3 &lt;oops&gt;"), std::string::npos) << "HTML escapes variables";
  EXPECT_NE(failed->text.find("https://cloud.example.test/v1/tasks/" + v["task_id"]), std::string::npos);
  EXPECT_NE(failed->text.find("Reply to this mail"), std::string::npos);
  auto announcement = mailer.render("announcement", "ann@example.test", v);
  EXPECT_EQ(announcement->subject, "[HarmarCloud] Maintenance tonight");
  EXPECT_NE(announcement->text.find("We upgrade at 22:00."), std::string::npos);
}

TEST(NotificationTemplates, task_mails_reply_to_a_token_address_and_carry_it_in_their_message_id) {
  auto db = email_db();
  auto mailer = mailer_for(*db, "notify@example.test");
  TemplateVars v;
  v["task_id"] = new_id();
  v["task_type"] = "shell";
  auto m = mailer.render("task-created", "ann@example.test", v);
  ASSERT_TRUE(m.ok());
  std::string token = token_of_address(m->reply_to);
  auto target = crypto()->verify_token(token);
  ASSERT_TRUE(target.has_value()) << m->reply_to;
  EXPECT_EQ(target->kind, 't');
  EXPECT_EQ(target->id, v["task_id"]);
  EXPECT_EQ(m->reply_to.substr(m->reply_to.find('@')), "@example.test");
  EXPECT_EQ(token_of_message_id(m->message_id + "@example.test"), token);
  auto built = build_message(*m, "HarmarCloud <no-reply@example.test>", 0);
  ASSERT_TRUE(built.ok());
  EXPECT_NE(built->find("Reply-To: notify+" + token + "@example.test\r\n"), std::string::npos);
  EXPECT_NE(built->find("Message-ID: <" + token + "."), std::string::npos);

  TemplateVars d;
  d["device_id"] = new_id();
  d["device_name"] = "pi";
  auto dm = mailer.render("device-offline", "ann@example.test", d);
  auto dt = crypto()->verify_token(token_of_address(dm->reply_to));
  ASSERT_TRUE(dt.has_value());
  EXPECT_EQ(dt->kind, 'd');

  auto no_reply = mailer_for(*db, "");
  auto nm = no_reply.render("task-created", "ann@example.test", v);
  EXPECT_TRUE(nm->reply_to.empty());
  EXPECT_FALSE(nm->message_id.empty()) << "replies still match by In-Reply-To";
  EXPECT_EQ(nm->text.find("Reply to this mail"), std::string::npos);
}

TEST(NotificationTemplates, the_vars_the_notifications_inbox_passes_fill_them) {
  // What notify/inbox.cpp gives: the task's type and status as `type` and `status`; a device
  // notice's name is lost under the user's `name`, so device mails fall back to title and body.
  auto db = email_db();
  auto mailer = mailer_for(*db, "");
  TemplateVars t;
  t["task_id"] = new_id();
  t["type"] = "build";
  t["status"] = "failed";
  t["error"] = "exit status 3";
  t["title"] = "Task build failed";
  auto failed = mailer.render("task-failed", "ann@example.test", t);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->subject, "[HarmarCloud] Task failed: build");
  EXPECT_NE(failed->text.find("status failed"), std::string::npos) << failed->text;
  TemplateVars d;
  d["device_id"] = new_id();
  d["title"] = "Device pi went offline";
  d["body"] = "Device pi stopped sending heartbeats.";
  auto off = mailer.render("device-offline", "ann@example.test", d);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->subject, "[HarmarCloud] Device pi went offline");
  EXPECT_NE(off->text.find("Device pi stopped sending heartbeats."), std::string::npos) << off->text;
}

TEST(ReplyText, keeps_the_new_lines_and_drops_the_quote) {
  EXPECT_EQ(reply_text("Done, thanks.\r\n\r\nOn Tue, Ann wrote:\r\n> old\r\n", 4096), "Done, thanks.");
  EXPECT_EQ(reply_text("first\nsecond\n> quoted\nafter", 4096), "first\nsecond");
  EXPECT_EQ(reply_text("text\n-- \nsignature", 4096), "text");
  EXPECT_EQ(reply_text("x\n-----Original Message-----\ny", 4096), "x");
  EXPECT_EQ(reply_text("\u00e9\u00e9\u00e9", 5), "\u00e9\u00e9");
  EXPECT_EQ(reply_text("> only a quote", 4096), "");
}

TEST(ReplyText, tokens_are_found_in_addresses_and_message_ids) {
  EXPECT_EQ(token_of_address("notify+abc@example.test"), "abc");
  EXPECT_EQ(token_of_address("ops@example.test"), "");
  EXPECT_EQ(token_of_message_id("abc.123@example.test"), "abc");
  EXPECT_EQ(token_of_message_id("plain@example.test"), "plain");
}

}  // namespace
}  // namespace harmar::notify
