// The auth rules against a real database, SQLite and PostgreSQL: sessions, refresh rotation and
// reuse, resets, captcha and rate limits, roles, API keys, and the Accounts interface.
#include <gtest/gtest.h>
#include <sodium.h>

#include <cctype>
#include <filesystem>
#include <functional>

#include "auth/auth_service.hpp"
#include "auth/migrations.hpp"
#include "core/clock.hpp"
#include "store/kv.hpp"
#include "store/pubsub.hpp"
#include "support/test_support.hpp"

namespace harmar::auth {
namespace {

using harmar::testing::run;

std::string slug() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string raw = std::string(info->name()) + "_" + info->test_suite_name();
  std::string out;
  for (char c : raw) out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  if (out.size() > 50) out = out.substr(0, 40) + "_" + std::to_string(std::hash<std::string>{}(out) % 1000000000);
  return "a_" + out;
}

// A captcha that the test solves: id "c-ok" with answer "42", each id once.
class FixedCaptcha : public CaptchaVerifier {
 public:
  asio::awaitable<bool> verify(std::string id, std::string answer) override {
    bool ok = id == "c-ok" && answer == "42" && !used_;
    if (id == "c-ok") used_ = true;
    co_return ok;
  }
  bool used_ = false;
};

class AuthServiceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url;
    if (GetParam() == "postgres") {
      url = harmar::testing::fresh_pg_schema_url(slug());
    } else {
      url = "sqlite://" + harmar::testing::temp_dir() + "/" + slug() + ".db";
    }
    db_ = std::move(store::Database::open(url)).value();
    std::vector<store::ModuleMigrations> mods;
    mods.push_back({"auth", migrations()});
    auto migrated = run(store::migrate(*db_, mods));
    ASSERT_TRUE(migrated.ok()) << migrated.error().detail;
    kv_ = std::move(store::Kv::open("")).value();
    pubsub_ = std::move(store::PubSub::open("")).value();
    make_service(settings());
  }

  static Settings settings() {
    Settings s;
    s.issuer = "harmar-test";
    s.public_url = "https://cloud.example";
    s.captcha_after_failures = 3;
    s.rate_limit_ip = 0;
    s.rate_limit_account = 0;
    return s;
  }

  void make_service(Settings s) {
    svc_.reset();
    ServerSecret secret{};
    randombytes_buf(secret.data(), secret.size());
    svc_ = std::make_unique<AuthService>(s, *db_, *kv_, *pubsub_, secret);
    svc_->set_mailer([this](Mail m) -> asio::awaitable<Status> {
      mails_.push_back(std::move(m));
      co_return Status{};
    });
    svc_->set_captcha([this] { return captcha_; });
  }

  TokenPair register_user(const std::string& email, const std::string& password = "correct horse battery") {
    AuthService::Credentials c;
    c.email = email;
    c.password = password;
    c.name = "Test";
    auto r = run(svc_->register_user(c, client_));
    EXPECT_TRUE(r.ok()) << r.error().detail;
    return r.ok() ? *r : TokenPair{};
  }

  Result<TokenPair> login(const std::string& email, const std::string& password,
                          std::optional<std::string> captcha_id = std::nullopt,
                          std::optional<std::string> captcha_answer = std::nullopt) {
    AuthService::Credentials c;
    c.email = email;
    c.password = password;
    c.captcha_id = std::move(captcha_id);
    c.captcha_answer = std::move(captcha_answer);
    return run(svc_->login(c, client_));
  }

  Result<Principal> bearer(const std::string& token) { return run(svc_->authenticate_bearer(token)); }

  std::vector<std::string> audit_events(const std::string& user_id) {
    auto rows = run(svc_->audit_log(user_id, std::nullopt, std::nullopt, 200));
    std::vector<std::string> out;
    if (rows.ok())
      for (const auto& r : *rows) out.push_back(r.event);
    return out;
  }

  static bool has(const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  }

  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Kv> kv_;
  std::unique_ptr<store::PubSub> pubsub_;
  std::unique_ptr<AuthService> svc_;
  std::vector<Mail> mails_;
  std::shared_ptr<CaptchaVerifier> captcha_;
  ClientInfo client_{"192.0.2.7", "unit-test"};
};

TEST_P(AuthServiceTest, register_login_and_access_token_identify_the_user) {
  TokenPair reg = register_user("  Alice@Example.COM ");
  EXPECT_EQ(reg.user.email, "alice@example.com");
  EXPECT_EQ(reg.user.roles, std::vector<std::string>{"user"});
  EXPECT_FALSE(reg.user.email_verified);
  EXPECT_EQ(reg.expires_in_s, 15 * 60);
  auto p = bearer(reg.access_token);
  ASSERT_TRUE(p.ok()) << p.error().detail;
  EXPECT_EQ(p->kind, Principal::Kind::User);
  EXPECT_EQ(p->user_id, reg.user.id);
  EXPECT_FALSE(p->session_id.empty());

  auto ok = login("alice@example.com", "correct horse battery");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_NE(ok->refresh_token, reg.refresh_token);

  auto wrong = login("alice@example.com", "wrong horse battery");
  ASSERT_FALSE(wrong.ok());
  auto unknown = login("nobody@example.com", "correct horse battery");
  ASSERT_FALSE(unknown.ok());
  // The same answer either way: no account enumeration through login.
  EXPECT_EQ(wrong.error().status, 401);
  EXPECT_EQ(wrong.error().code, "invalid_credentials");
  EXPECT_EQ(unknown.error().code, wrong.error().code);
  EXPECT_EQ(unknown.error().detail, wrong.error().detail);

  auto dup = run(svc_->register_user({"ALICE@example.com", "another good password", ""}, client_));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, "email_taken");

  auto events = audit_events(reg.user.id);
  EXPECT_TRUE(has(events, "register"));
  EXPECT_TRUE(has(events, "login.ok"));
  EXPECT_TRUE(has(events, "login.failed"));
}

TEST_P(AuthServiceTest, refresh_rotates_and_reuse_revokes_session) {
  TokenPair first = register_user("bob@example.com");
  auto second = run(svc_->refresh(first.refresh_token, client_));
  ASSERT_TRUE(second.ok()) << second.error().detail;
  EXPECT_NE(second->refresh_token, first.refresh_token);
  EXPECT_TRUE(bearer(second->access_token).ok());

  // The spent token comes back (stolen copy): the whole session ends.
  auto reuse = run(svc_->refresh(first.refresh_token, client_));
  ASSERT_FALSE(reuse.ok());
  EXPECT_EQ(reuse.error().status, 401);
  EXPECT_EQ(reuse.error().code, "refresh_token_reused");
  auto after = run(svc_->refresh(second->refresh_token, client_));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().status, 401);
  // Access tokens of the session stop working too, before they expire.
  auto access = bearer(second->access_token);
  ASSERT_FALSE(access.ok());
  EXPECT_EQ(access.error().detail, "the session has ended");
  EXPECT_FALSE(bearer(first.access_token).ok());
  EXPECT_TRUE(has(audit_events(first.user.id), "refresh.reuse"));

  auto garbage = run(svc_->refresh("hrt_not-a-token", client_));
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().code, "invalid_token");
}

TEST_P(AuthServiceTest, refresh_after_the_idle_or_absolute_lifetime_is_refused) {
  Settings s = settings();
  s.refresh_idle_ms = 60'000;
  make_service(s);
  TokenPair t = register_user("idle@example.com");
  // The session was last used two minutes ago.
  auto aged = run(db_->exec("UPDATE sessions SET last_used_at = $1", {now_ms() - 120'000}));
  ASSERT_TRUE(aged.ok());
  auto r = run(svc_->refresh(t.refresh_token, client_));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 401);

  TokenPair u = register_user("old@example.com");
  auto expired = run(db_->exec("UPDATE sessions SET expires_at = $1 WHERE user_id = $2", {now_ms() - 1, u.user.id}));
  ASSERT_TRUE(expired.ok());
  EXPECT_FALSE(run(svc_->refresh(u.refresh_token, client_)).ok());
}

TEST_P(AuthServiceTest, logout_and_ending_a_session_stop_its_tokens) {
  TokenPair a = register_user("carol@example.com");
  auto b = login("carol@example.com", "correct horse battery");
  ASSERT_TRUE(b.ok());
  auto pa = bearer(a.access_token);
  ASSERT_TRUE(pa.ok());
  auto out = run(svc_->logout(*pa, std::nullopt, client_));
  ASSERT_TRUE(out.ok()) << out.error().detail;
  EXPECT_FALSE(bearer(a.access_token).ok());
  EXPECT_FALSE(run(svc_->refresh(a.refresh_token, client_)).ok());
  EXPECT_TRUE(bearer(b->access_token).ok());

  auto sessions = run(svc_->sessions(a.user.id, std::nullopt, 50));
  ASSERT_TRUE(sessions.ok());
  ASSERT_EQ(sessions->size(), 1u);
  auto pb = bearer(b->access_token);
  ASSERT_TRUE(pb.ok());
  EXPECT_EQ(sessions->front().id, pb->session_id);
  EXPECT_EQ(sessions->front().ip, "192.0.2.7");
  EXPECT_EQ(sessions->front().user_agent, "unit-test");

  // Someone else's session is "not found", not "forbidden".
  TokenPair d = register_user("dave@example.com");
  auto pd = bearer(d.access_token);
  ASSERT_TRUE(pd.ok());
  auto foreign = run(svc_->end_session(*pd, pb->session_id, client_));
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().status, 404);
  auto own = run(svc_->end_session(*pb, pb->session_id, client_));
  ASSERT_TRUE(own.ok());
  EXPECT_FALSE(bearer(b->access_token).ok());

  // Logout by refresh token alone (no access token).
  auto by_refresh = run(svc_->logout(std::nullopt, d.refresh_token, client_));
  ASSERT_TRUE(by_refresh.ok());
  EXPECT_FALSE(bearer(d.access_token).ok());
}

TEST_P(AuthServiceTest, login_rehashes_a_password_stored_below_the_configured_cost) {
  TokenPair t = register_user("erin@example.com");
  std::string weak = hash_password_blocking("correct horse battery", HashParams{1, 8 << 20});
  auto set = run(repo::set_password_hash(*db_, t.user.id, weak));
  ASSERT_TRUE(set.ok());
  auto ok = login("erin@example.com", "correct horse battery");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  auto row = run(repo::user_by_id(*db_, t.user.id));
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_NE((*row)->password_hash, weak);
  EXPECT_NE((*row)->password_hash.find("m=19456,t=2"), std::string::npos) << (*row)->password_hash;
  EXPECT_TRUE(login("erin@example.com", "correct horse battery").ok());
}

TEST_P(AuthServiceTest, email_verification_link_works_once) {
  TokenPair t = register_user("frank@example.com");
  ASSERT_EQ(mails_.size(), 1u);
  EXPECT_EQ(mails_[0].to, "frank@example.com");
  EXPECT_EQ(mails_[0].template_name, "verify-email");
  std::string token = mails_[0].vars.at("token");
  EXPECT_EQ(mails_[0].vars.at("link"), "https://cloud.example/verify-email?token=" + token);
  auto v = run(svc_->verify_email(token, client_));
  ASSERT_TRUE(v.ok()) << v.error().detail;
  EXPECT_TRUE(v->email_verified);
  auto again = run(svc_->verify_email(token, client_));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, "invalid_token");
  EXPECT_FALSE(run(svc_->verify_email("made-up", client_)).ok());
  auto me = run(svc_->find_user(t.user.id));
  ASSERT_TRUE(me.ok());
  EXPECT_TRUE(me->email_verified);
}

TEST_P(AuthServiceTest, password_reset_ends_every_session_and_the_link_works_once) {
  TokenPair a = register_user("grace@example.com");
  auto b = login("grace@example.com", "correct horse battery");
  ASSERT_TRUE(b.ok());
  mails_.clear();
  ASSERT_TRUE(run(svc_->forgot_password("nobody@example.com", client_)).ok());
  EXPECT_TRUE(mails_.empty());  // nothing is sent, and nothing tells the caller
  ASSERT_TRUE(run(svc_->forgot_password("Grace@example.com", client_)).ok());
  ASSERT_EQ(mails_.size(), 1u);
  EXPECT_EQ(mails_[0].template_name, "reset-password");
  std::string token = mails_[0].vars.at("token");

  auto weak = run(svc_->reset_password(token, "password", client_));
  ASSERT_FALSE(weak.ok());
  EXPECT_EQ(weak.error().status, 422);  // the policy applies, and the link is still good
  auto reset = run(svc_->reset_password(token, "a brand new passphrase", client_));
  ASSERT_TRUE(reset.ok()) << reset.error().detail;
  EXPECT_TRUE(reset->email_verified);
  EXPECT_FALSE(bearer(a.access_token).ok());
  EXPECT_FALSE(bearer(b->access_token).ok());
  EXPECT_FALSE(run(svc_->refresh(b->refresh_token, client_)).ok());
  EXPECT_FALSE(login("grace@example.com", "correct horse battery").ok());
  EXPECT_TRUE(login("grace@example.com", "a brand new passphrase").ok());
  auto again = run(svc_->reset_password(token, "yet another passphrase", client_));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, "invalid_token");
  EXPECT_TRUE(has(audit_events(a.user.id), "password.reset"));
}

TEST_P(AuthServiceTest, captcha_is_required_after_repeated_failures) {
  register_user("heidi@example.com");
  for (int i = 0; i < 3; ++i) {
    auto r = login("heidi@example.com", "not the password");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, "invalid_credentials") << i;
  }
  auto need = login("heidi@example.com", "correct horse battery");
  ASSERT_FALSE(need.ok());
  EXPECT_EQ(need.error().status, 401);
  EXPECT_EQ(need.error().code, "captcha_required");
  // An unknown address behaves the same: failures count per address, not per account.
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(login("ghost@example.com", "not the password").ok());
  EXPECT_EQ(login("ghost@example.com", "not the password").error().code, "captcha_required");

  auto captcha = std::make_shared<FixedCaptcha>();
  captcha_ = captcha;
  auto wrong = login("heidi@example.com", "correct horse battery", "c-other", "41");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, "captcha_required");
  auto ok = login("heidi@example.com", "correct horse battery", "c-ok", "42");
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  // Success clears the failures: no captcha needed next time.
  EXPECT_TRUE(login("heidi@example.com", "correct horse battery").ok());
}

TEST_P(AuthServiceTest, rate_limits_answer_429_with_retry_after) {
  Settings s = settings();
  s.rate_limit_ip = 3;
  s.rate_limit_window_ms = 60'000;
  s.captcha_after_failures = 0;
  make_service(s);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(login("ivan@example.com", "not the password").error().code == "rate_limited");
  auto limited = login("ivan@example.com", "not the password");
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.error().status, 429);
  EXPECT_EQ(limited.error().code, "rate_limited");
  EXPECT_GT(limited.error().retry_after_s, 0);
  EXPECT_LE(limited.error().retry_after_s, 60);
  // Another client IP is not affected.
  client_.ip = "192.0.2.8";
  EXPECT_EQ(login("ivan@example.com", "not the password").error().code, "invalid_credentials");
}

TEST_P(AuthServiceTest, api_keys_hold_a_subset_of_their_creators_permissions_and_revoke_at_once) {
  TokenPair t = register_user("judy@example.com");
  Principal admin;
  admin.kind = Principal::Kind::User;
  admin.id = admin.user_id = "root";
  admin.roles = {"admin"};
  repo::RoleRow ops;
  ops.name = "ops";
  ops.permissions = {"devices.read", "tasks.*"};
  ASSERT_TRUE(run(svc_->create_role(ops, admin, client_)).ok());
  auto dup = run(svc_->create_role(ops, admin, client_));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, "role_exists");
  auto assigned = run(svc_->set_user_roles(t.user.id, {"ops", "user"}, admin, client_));
  ASSERT_TRUE(assigned.ok()) << assigned.error().detail;
  auto relog = login("judy@example.com", "correct horse battery");
  ASSERT_TRUE(relog.ok());
  auto judy = bearer(relog->access_token);
  ASSERT_TRUE(judy.ok());
  EXPECT_TRUE(svc_->authorize(*judy, "devices.read"));
  EXPECT_TRUE(svc_->authorize(*judy, "tasks.create"));
  EXPECT_FALSE(svc_->authorize(*judy, "roles.manage"));
  EXPECT_TRUE(svc_->authorize(admin, "anything.at.all"));

  auto too_much = run(svc_->create_api_key(*judy, "ci", {"roles.manage"}, std::nullopt, client_));
  ASSERT_FALSE(too_much.ok());
  EXPECT_EQ(too_much.error().status, 403);
  auto key = run(svc_->create_api_key(*judy, "ci", {"devices.read"}, std::nullopt, client_));
  ASSERT_TRUE(key.ok()) << key.error().detail;
  EXPECT_EQ(key->secret.rfind("hak_", 0), 0u);
  EXPECT_EQ(key->secret.size(), 47u);

  auto kp = bearer(key->secret);
  ASSERT_TRUE(kp.ok()) << kp.error().detail;
  EXPECT_EQ(kp->kind, Principal::Kind::ApiKey);
  EXPECT_EQ(kp->user_id, t.user.id);
  EXPECT_TRUE(svc_->authorize(*kp, "devices.read"));
  EXPECT_FALSE(svc_->authorize(*kp, "tasks.create"));  // the key was not given it
  auto listed = run(svc_->api_keys(t.user.id, std::nullopt, 50));
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_TRUE(listed->front().last_used_at.has_value());

  // Keys of others are not found; one's own is revoked at once.
  TokenPair other = register_user("mallory@example.com");
  auto mallory = bearer(other.access_token);
  ASSERT_TRUE(mallory.ok());
  EXPECT_EQ(run(svc_->revoke_api_key(*mallory, key->key.id, client_)).error().status, 404);
  ASSERT_TRUE(run(svc_->revoke_api_key(*judy, key->key.id, client_)).ok());
  EXPECT_FALSE(bearer(key->secret).ok());
  // A key cannot mint keys.
  EXPECT_EQ(run(svc_->create_api_key(*kp, "x", {}, std::nullopt, client_)).error().status, 403);
  auto events = audit_events(t.user.id);
  EXPECT_TRUE(has(events, "api_key.created"));
  EXPECT_TRUE(has(events, "api_key.revoked"));
  EXPECT_TRUE(has(events, "role.assigned"));
}

TEST_P(AuthServiceTest, builtin_roles_cannot_be_deleted_and_unknown_roles_are_refused) {
  Principal admin;
  admin.kind = Principal::Kind::User;
  admin.id = admin.user_id = "root";
  admin.roles = {"admin"};
  EXPECT_EQ(run(svc_->delete_role("admin", admin, client_)).error().code, "role_builtin");
  EXPECT_EQ(run(svc_->delete_role("nope", admin, client_)).error().status, 404);
  TokenPair t = register_user("ken@example.com");
  EXPECT_EQ(run(svc_->set_user_roles(t.user.id, {"nope"}, admin, client_)).error().status, 422);
  EXPECT_EQ(run(svc_->set_user_roles("no-such-user", {"user"}, admin, client_)).error().status, 404);
}

TEST_P(AuthServiceTest, accounts_find_or_create_by_email_phone_and_identity) {
  auto a = run(svc_->find_or_create_by_email("Oauth@Example.com", "OA", true));
  ASSERT_TRUE(a.ok()) << a.error().detail;
  EXPECT_TRUE(a->email_verified);
  auto again = run(svc_->find_or_create_by_email("oauth@example.com", "", false));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, a->id);
  ASSERT_TRUE(run(svc_->link_identity(a->id, "github", "12345", "oauth@example.com")).ok());
  ASSERT_TRUE(run(svc_->link_identity(a->id, "github", "12345", "oauth@example.com")).ok());
  auto found = run(svc_->find_by_identity("github", "12345"));
  ASSERT_TRUE(found.ok() && *found);
  EXPECT_EQ((*found)->id, a->id);
  auto none = run(svc_->find_by_identity("github", "999"));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto phone = run(svc_->find_or_create_by_phone("+8613800000000"));
  ASSERT_TRUE(phone.ok()) << phone.error().detail;
  EXPECT_EQ(phone->email, "");
  EXPECT_EQ(run(svc_->find_or_create_by_phone("+8613800000000"))->id, phone->id);
  auto taken = run(svc_->link_identity(phone->id, "github", "12345", ""));
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code, "identity_taken");

  auto bare = run(svc_->create_user_without_email("WeChat User"));
  ASSERT_TRUE(bare.ok()) << bare.error().detail;
  EXPECT_EQ(bare->email, "");
  EXPECT_EQ(bare->roles, std::vector<std::string>{"user"});
  ASSERT_TRUE(run(svc_->link_identity(bare->id, "wechat", "o-123", "")).ok());
  EXPECT_EQ((*run(svc_->find_by_identity("wechat", "o-123")))->id, bare->id);

  auto pair = run(svc_->start_session(phone->id, client_, "sms"));
  ASSERT_TRUE(pair.ok()) << pair.error().detail;
  auto js = pair->to_json();
  EXPECT_EQ(js.at("token_type").as_string(), "Bearer");
  EXPECT_EQ(js.at("user").as_object().at("email").as_string(), "");
  EXPECT_TRUE(bearer(pair->access_token).ok());
  // A password login cannot reach an account without a password.
  EXPECT_EQ(login("oauth@example.com", "correct horse battery").error().code, "invalid_credentials");
}

TEST_P(AuthServiceTest, rotated_keys_keep_verifying_old_tokens_and_both_are_published) {
  TokenPair before = register_user("leo@example.com");
  auto kid = run(svc_->keys().rotate());
  ASSERT_TRUE(kid.ok()) << kid.error().detail;
  auto after = login("leo@example.com", "correct horse battery");
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(bearer(before.access_token).ok());
  EXPECT_TRUE(bearer(after->access_token).ok());
  auto jwks = svc_->keys().jwks(now_ms());
  EXPECT_EQ(jwks.at("keys").as_array().size(), 2u);
  // Once the old key's tokens have all expired it leaves the set.
  auto later = svc_->keys().jwks(now_ms() + 16 * 60 * 1000 + 61'000);
  EXPECT_EQ(later.at("keys").as_array().size(), 1u);
  EXPECT_EQ(later.at("keys").as_array()[0].as_object().at("kid").as_string(), *kid);
}

INSTANTIATE_TEST_SUITE_P(Backends, AuthServiceTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace harmar::auth
