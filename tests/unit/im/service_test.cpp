// The instant-messaging rules against a real database, SQLite and PostgreSQL: sync positions,
// idempotent sends (also when they race), gap-free seqs under concurrent senders, the lock order
// that keeps concurrent writers free of deadlocks, roles, the channel filter of removed members,
// trimmed sync logs, presence across nodes, and the ciphertext and media-type checks.
#include <gtest/gtest.h>
#include <sodium.h>

#include <boost/json.hpp>

#include <cctype>
#include <thread>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "im/im.hpp"
#include "im/repo.hpp"
#include "im/service.hpp"
#include "support/test_support.hpp"

namespace harmar::im {
namespace {

namespace js = boost::json;
using harmar::testing::run;

std::string slug() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string raw = std::string(info->name()) + "_" + info->test_suite_name();
  std::string out;
  for (char c : raw) out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  if (out.size() > 50) out = out.substr(0, 40) + "_" + std::to_string(std::hash<std::string>{}(out) % 1000000000);
  return "im_" + out;
}

Principal user(const std::string& id) {
  Principal p;
  p.kind = Principal::Kind::User;
  p.id = p.user_id = id;
  return p;
}

std::string b64(const std::string& bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.find('\0'));
  return out;
}

class ImTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { open(); }

  void open(std::vector<std::pair<std::string, std::string>> settings = {}) {
    if (GetParam() == "postgres") {
      url_ = harmar::testing::fresh_pg_schema_url(slug());
    } else {
      url_ = "sqlite://" + harmar::testing::temp_dir() + "/" + slug() + ".db";
    }
    config::Schema schema = config::core_schema();
    module().configure(schema);
    cfg_ = std::make_unique<config::Config>(std::move(config::Config::load(schema, "", settings)).value());
    db_ = std::move(store::Database::open(url_)).value();
    std::vector<store::ModuleMigrations> mods;
    mods.push_back({"im", repo::migrations()});
    auto migrated = run(store::migrate(*db_, mods));
    ASSERT_TRUE(migrated.ok()) << migrated.error().detail;
    pubsub_ = std::move(store::PubSub::open("")).value();
    kv_ = std::move(store::Kv::open("")).value();
    blobs_ = std::move(store::BlobStore::open("", harmar::testing::temp_dir() + "/" + slug())).value();
    events_ = std::make_unique<platform::EventBus>(*pubsub_);
    services_ = std::make_unique<platform::Services>(*cfg_, *db_, *pubsub_, *kv_, *blobs_, *events_, background_);
    svc_ = std::make_shared<Service>(*services_, Options::from(*cfg_));
  }

  std::string group(const std::string& owner, std::vector<std::string> members) {
    CreateInput in;
    in.type = "group";
    in.member_ids = std::move(members);
    in.title = "team";
    auto c = run(svc_->create(user(owner), in));
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().detail);
    return c.ok() ? c->conversation.id : "";
  }

  Result<Sent> send(const std::string& who, const std::string& conv, std::string body, std::string cmid = "") {
    SendInput in;
    in.body = std::move(body);
    in.client_msg_id = cmid.empty() ? new_id() : std::move(cmid);
    return run(svc_->send(user(who), conv, std::move(in)));
  }

  std::vector<SyncEvent> sync_all(const std::string& who, int64_t since = 0) {
    std::vector<SyncEvent> out;
    for (;;) {
      auto page = run(svc_->sync(user(who), since, 7));
      EXPECT_TRUE(page.ok());
      if (!page.ok()) return out;
      for (auto& e : page->events) out.push_back(std::move(e));
      since = page->next_since;
      if (!page->has_more) return out;
    }
  }

  std::string url_;
  std::unique_ptr<config::Config> cfg_;
  asio::io_context background_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::PubSub> pubsub_;
  std::unique_ptr<store::Kv> kv_;
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<platform::EventBus> events_;
  std::unique_ptr<platform::Services> services_;
  std::shared_ptr<Service> svc_;
};

TEST_P(ImTest, every_change_gets_the_next_position_of_each_user_it_concerns) {
  std::string g = group("ann", {"bob"});
  auto m = send("ann", g, "hello");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->message.seq, 1);
  auto edited = run(svc_->edit(user("ann"), g, m->message.id, "hello!", ""));
  ASSERT_TRUE(edited.ok()) << edited.error().detail;
  auto read = run(svc_->mark_read(user("bob"), g, 1));
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->unread_count, 0);
  auto recalled = run(svc_->recall(user("ann"), g, m->message.id));
  ASSERT_TRUE(recalled.ok());

  auto ann = sync_all("ann");
  auto bob = sync_all("bob");
  std::vector<std::string> ann_types, bob_types;
  for (const auto& e : ann) ann_types.push_back(e.type);
  for (const auto& e : bob) bob_types.push_back(e.type);
  EXPECT_EQ(ann_types, (std::vector<std::string>{"conversation.created", "message.new", "message.edited", "message.deleted"}));
  // The read position is Bob's alone: his other devices learn it, Ann's do not.
  EXPECT_EQ(bob_types, (std::vector<std::string>{"conversation.created", "message.new", "message.edited",
                                                 "conversation.read", "message.deleted"}));
  for (std::size_t i = 0; i < bob.size(); ++i) EXPECT_EQ(bob[i].pos, static_cast<int64_t>(i + 1));
  // Message events show the message as it is now.
  EXPECT_EQ(bob[1].data.at("message").at("deleted"), true);
  EXPECT_EQ(bob[1].data.at("message").at("body"), "");
  // From a position, exactly what follows it.
  auto tail = sync_all("bob", 3);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0].pos, 4);
}

TEST_P(ImTest, one_client_msg_id_stores_one_message_even_when_retries_race) {
  std::string g = group("ann", {"bob"});
  std::vector<std::thread> threads;
  std::vector<std::string> ids(6);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      auto r = send("ann", g, "once", "same-id");
      if (r.ok()) ids[i] = r->message.id;
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& id : ids) EXPECT_EQ(id, ids[0]);
  auto history = run(svc_->history(user("bob"), g, 0, 0, 50));
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ(history->front().seq, 1);
  EXPECT_EQ(sync_all("bob").size(), 2u);  // created + one message.new
}

TEST_P(ImTest, concurrent_senders_in_overlapping_conversations_get_gapless_seqs_and_positions) {
  // Two conversations sharing members, written from four threads at once: seqs per conversation
  // and positions per user stay 1..N with no gap or repeat, and nobody deadlocks.
  std::string g1 = group("ann", {"bob", "cid"});
  std::string g2 = group("cid", {"bob", "dan"});
  constexpr int kEach = 15;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (auto [who, conv] : std::vector<std::pair<std::string, std::string>>{{"ann", g1}, {"bob", g1}, {"bob", g2}, {"dan", g2}}) {
    threads.emplace_back([&, who, conv] {
      for (int i = 0; i < kEach; ++i) {
        auto r = send(who, conv, who + " " + std::to_string(i));
        if (!r.ok()) failures++;
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 10; ++i) {
      auto r = run(svc_->mark_read(user("bob"), g1, 1000));
      if (!r.ok()) failures++;
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (const auto& [conv, reader] : std::vector<std::pair<std::string, std::string>>{{g1, "ann"}, {g2, "dan"}}) {
    auto page = run(svc_->history(user(reader), conv, 0, 0, 200));
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->size(), 2u * kEach);
    for (std::size_t i = 0; i < page->size(); ++i) EXPECT_EQ((*page)[i].seq, static_cast<int64_t>(i + 1));
  }
  for (const char* who : {"ann", "bob", "cid", "dan"}) {
    auto log = sync_all(who);
    for (std::size_t i = 0; i < log.size(); ++i) ASSERT_EQ(log[i].pos, static_cast<int64_t>(i + 1)) << who;
  }
  auto bob = sync_all("bob");
  int news = 0;
  for (const auto& e : bob) news += e.type == "message.new";
  EXPECT_EQ(news, 4 * kEach);
}

TEST_P(ImTest, roles_decide_who_adds_kicks_and_inherits) {
  std::string g = group("own", {"adm", "mem", "mem2"});
  auto promoted = run(svc_->set_role(user("own"), g, "adm", "admin"));
  ASSERT_TRUE(promoted.ok());
  EXPECT_EQ(run(svc_->add_members(user("mem"), g, {"new"}, "member")).error().status, 403);
  EXPECT_EQ(run(svc_->add_members(user("adm"), g, {"new"}, "admin")).error().status, 403);
  ASSERT_TRUE(run(svc_->add_members(user("adm"), g, {"new"}, "member")).ok());
  EXPECT_EQ(run(svc_->remove_member(user("mem"), g, "mem2")).error().status, 403);
  EXPECT_EQ(run(svc_->remove_member(user("adm"), g, "own")).error().status, 403);
  ASSERT_TRUE(run(svc_->remove_member(user("adm"), g, "mem2")).ok());
  EXPECT_EQ(run(svc_->get(user("mem2"), g)).error().status, 404);
  ASSERT_TRUE(run(svc_->remove_member(user("own"), g, "own")).ok());
  auto d = run(svc_->get(user("adm"), g));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->conversation.role, "owner");
  EXPECT_EQ(d->conversation.member_count, 3);
  EXPECT_EQ(d->members.size(), 3u);
}

TEST_P(ImTest, a_removed_member_stops_seeing_the_channel_until_added_back) {
  std::string g = group("ann", {"bob"});
  auto access = run(svc_->channel_access(user("bob"), "conversation:" + g));
  ASSERT_TRUE(access.allowed);
  ASSERT_TRUE(access.filter);
  js::object message{{"message", js::object{{"body", "hi"}}}};
  EXPECT_TRUE(access.filter(message));
  js::object removed{{"conversation_id", g}, {"user_id", "bob"}, {"membership", "removed"}};
  js::object other_left{{"conversation_id", g}, {"user_id", "cid"}, {"membership", "left"}};
  js::object joined{{"conversation_id", g}, {"user_id", "bob"}, {"membership", "joined"}};
  EXPECT_TRUE(access.filter(other_left));
  EXPECT_TRUE(access.filter(removed));  // one's own removal is shown, once
  EXPECT_FALSE(access.filter(message));
  EXPECT_FALSE(access.filter(removed));
  EXPECT_TRUE(access.filter(joined));
  EXPECT_TRUE(access.filter(message));
  EXPECT_FALSE(run(svc_->channel_access(user("eve"), "conversation:" + g)).allowed);
  EXPECT_FALSE(run(svc_->channel_access(user("bob"), "conversation:nope")).allowed);
  Principal device = user("bob");
  device.kind = Principal::Kind::Device;
  EXPECT_FALSE(run(svc_->channel_access(device, "conversation:" + g)).allowed);
}

TEST_P(ImTest, a_trimmed_sync_log_says_history_gone_and_resumes_at_the_oldest_kept) {
  std::string g = group("ann", {"bob"});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(send("ann", g, "m" + std::to_string(i)).ok());
  // Age the first three events of Bob's log and trim as the sweeper does.
  auto aged = run(db_->exec("UPDATE im_sync_events SET created_at = 0 WHERE pos <= 3"));
  ASSERT_TRUE(aged.ok());
  auto trimmed = run(repo::trim_sync(*db_, 1));
  ASSERT_TRUE(trimmed.ok());
  auto page = run(svc_->sync(user("bob"), 1, 100));
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->history_gone);
  EXPECT_EQ(page->since, 3);
  ASSERT_EQ(page->events.size(), 3u);
  EXPECT_EQ(page->events.front().pos, 4);
  auto fine = run(svc_->sync(user("bob"), 3, 100));
  ASSERT_TRUE(fine.ok());
  EXPECT_FALSE(fine->history_gone);
  auto ahead = run(svc_->sync(user("bob"), 99, 100));
  ASSERT_FALSE(ahead.ok());
  EXPECT_EQ(ahead.error().code, "since_ahead");
}

TEST_P(ImTest, presence_is_online_while_any_node_has_a_socket_and_expires_with_a_dead_node) {
  std::string g = group("ann", {"bob"});
  auto other = std::make_shared<Service>(*services_, Options::from(*cfg_));  // a second node
  auto online = [&](const std::string& who) {
    auto p = run(svc_->presence(user("ann"), {who}));
    EXPECT_TRUE(p.ok());
    return p.ok() && !p->empty() && p->front().online;
  };
  EXPECT_FALSE(online("bob"));
  // What realtime's Connections watcher reports, applied as the presence loop would.
  auto change = [](Service& s, const std::string& who, bool on) {
    s.on_presence(who, on);
    run(s.presence_tick());
  };
  change(*svc_, "bob", true);
  change(*other, "bob", true);
  EXPECT_TRUE(online("bob"));
  change(*svc_, "bob", false);
  EXPECT_TRUE(online("bob"));  // still on the other node
  change(*other, "bob", false);
  EXPECT_FALSE(online("bob"));
  auto p = run(svc_->presence(user("ann"), {"bob", "eve"}));
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 1u);  // eve shares no conversation with ann
  EXPECT_TRUE(p->front().last_seen_at.has_value());
  // A node that dies without a word: its rows expire after the TTL.
  change(*other, "bob", true);
  EXPECT_TRUE(online("bob"));
  auto stale = run(db_->exec("UPDATE im_presence SET seen_at = 0"));
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(online("bob"));
  auto swept = run(repo::presence_sweep(*db_, now_ms() - 1000));
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(*swept, 1);
}

TEST_P(ImTest, encrypted_conversations_take_only_well_formed_ciphertext) {
  CreateInput in;
  in.type = "group";
  in.member_ids = {"bob"};
  in.encrypted = true;
  auto c = run(svc_->create(user("ann"), in));
  ASSERT_TRUE(c.ok());
  std::string g = c->conversation.id;
  EXPECT_EQ(send("ann", g, "plaintext").error().code, "validation_failed");
  std::string key = std::string(crypto_box_PUBLICKEYBYTES, 'k');
  auto registered = run(svc_->put_key(user("bob"), "phone", b64(key)));
  ASSERT_TRUE(registered.ok());
  js::object map{{registered->id, b64(std::string(crypto_box_SEALBYTES + 10, 'c'))}};
  auto text = check_ciphertext(map, 1 << 20);
  ASSERT_TRUE(text.ok());
  SendInput msg;
  msg.client_msg_id = "e1";
  msg.ciphertext = *text;
  auto sent = run(svc_->send(user("ann"), g, msg));
  ASSERT_TRUE(sent.ok()) << sent.error().detail;
  EXPECT_EQ(sent->message.body, "");
  EXPECT_FALSE(check_ciphertext(js::object{}, 1 << 20).ok());
  EXPECT_FALSE(check_ciphertext(js::object{{"nope", b64("x")}}, 1 << 20).ok());
  EXPECT_FALSE(check_ciphertext(js::object{{new_id(), "%%%"}}, 1 << 20).ok());
  EXPECT_FALSE(check_ciphertext(js::object{{new_id(), b64(std::string(crypto_box_SEALBYTES, 'c'))}}, 1 << 20).ok());
  EXPECT_EQ(check_ciphertext(map, 10).error().status, 413);
  // A plain conversation refuses ciphertext.
  std::string plain = group("ann", {"bob"});
  SendInput wrong = msg;
  wrong.client_msg_id = "e2";
  EXPECT_FALSE(run(svc_->send(user("ann"), plain, wrong)).ok());
}

TEST(ImTypes, patterns_allow_exact_types_whole_families_and_ignore_parameters) {
  std::vector<std::string> allowed{"image/*", "application/pdf"};
  EXPECT_TRUE(type_allowed("image/png", allowed));
  EXPECT_TRUE(type_allowed("IMAGE/JPEG; q=1", allowed));
  EXPECT_TRUE(type_allowed("application/pdf", allowed));
  EXPECT_FALSE(type_allowed("application/pdfx", allowed));
  EXPECT_FALSE(type_allowed("imagex/png", allowed));
  EXPECT_FALSE(type_allowed("", allowed));
  EXPECT_TRUE(type_allowed("text/x-anything", {"*/*"}));
}

INSTANTIATE_TEST_SUITE_P(Backends, ImTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace harmar::im
