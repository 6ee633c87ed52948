#include "auth/keys.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"

namespace harmar::auth {

namespace js = boost::json;

namespace {

// Clock skew between nodes that a retired key still covers.
constexpr int64_t kSkewMs = 60'000;

std::optional<ServerSecret> decode_secret(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  for (int variant : {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                      sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING}) {
    ServerSecret s{};
    std::size_t len = 0;
    const char* end = nullptr;
    if (sodium_base642bin(s.data(), s.size(), text.data(), text.size(), nullptr, &len, &end, variant) == 0 &&
        len == s.size() && end == text.data() + text.size())
      return s;
  }
  return std::nullopt;
}

std::string encode_b64(const unsigned char* p, std::size_t n) {
  std::string out(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), p, n, sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);
  return out;
}

std::string seal(const ServerSecret& secret, const jwt::SecretKey& sk) {
  std::string box(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + sk.size(), '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(box.data());
  randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES, sk.data(), sk.size(), nonce, secret.data());
  return jwt::b64url_encode(box);
}

std::optional<jwt::SecretKey> open_box(const ServerSecret& secret, std::string_view sealed) {
  auto box = jwt::b64url_decode(sealed);
  jwt::SecretKey sk{};
  if (!box || box->size() != crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + sk.size()) return std::nullopt;
  auto* nonce = reinterpret_cast<const unsigned char*>(box->data());
  if (crypto_secretbox_open_easy(sk.data(), nonce + crypto_secretbox_NONCEBYTES,
                                 box->size() - crypto_secretbox_NONCEBYTES, nonce, secret.data()) != 0)
    return std::nullopt;
  return sk;
}

}  // namespace

Result<ServerSecret> load_server_secret(const config::Config& cfg) {
  std::string configured = cfg.get_string("auth.secret");
  if (!configured.empty()) {
    auto s = decode_secret(configured);
    if (!s) return Error::validation("auth.secret must be the base64 form of 32 bytes (openssl rand -base64 32)");
    return *s;
  }
  namespace fs = std::filesystem;
  fs::path dir = cfg.get_string("data_dir");
  fs::path path = dir / "auth.key";
  std::error_code ec;
  fs::create_directories(dir, ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ServerSecret s{};
    randombytes_buf(s.data(), s.size());
    std::string text = encode_b64(s.data(), s.size()) + "\n";
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) return Error::internal("cannot write " + path.string());
    log::get("auth")->info(log::fields({{"msg", "generated the server secret; every node must share it"}, {"path", path.string()}}));
    return s;
  }
  if (errno != EEXIST) return Error::internal("cannot create " + path.string() + ": " + std::strerror(errno));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return Error::internal("cannot read " + path.string());
  auto s = decode_secret(text.str());
  if (!s) return Error::internal(path.string() + " does not hold the base64 form of 32 bytes");
  return *s;
}

KeyRing::KeyRing(store::Database& db, ServerSecret secret, int64_t access_ttl_ms)
    : db_(db), secret_(secret), access_ttl_ms_(access_ttl_ms) {}

bool KeyRing::still_verifies(const Entry& e, int64_t now_ms) const {
  return !e.retired_at || now_ms < *e.retired_at + access_ttl_ms_ + kSkewMs;
}

asio::awaitable<Status> KeyRing::insert_new_key(store::Querier& q, int64_t now) {
  jwt::PublicKey pk{};
  jwt::SecretKey sk{};
  crypto_sign_keypair(pk.data(), sk.data());
  std::string kid = "k" + random_hex(8);
  std::string pk_text = jwt::b64url_encode(std::string_view(reinterpret_cast<const char*>(pk.data()), pk.size()));
  std::string sealed = seal(secret_, sk);
  sodium_memzero(sk.data(), sk.size());
  auto ins = co_await q.exec(
      "INSERT INTO signing_keys (kid, public_key, secret_box, created_at, retired_at) VALUES ($1, $2, $3, $4, NULL)",
      {kid, pk_text, sealed, now});
  if (!ins.ok()) co_return ins.error();
  co_return Status{};
}

asio::awaitable<Status> KeyRing::reload() {
  int64_t now = now_ms();
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto rows = co_await db_.query(
        "SELECT kid, public_key, secret_box, created_at, retired_at FROM signing_keys "
        "WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at, kid",
        {now - access_ttl_ms_ - kSkewMs});
    if (!rows.ok()) co_return rows.error();
    std::unordered_map<std::string, Entry> keys;
    std::string current;
    int64_t current_created = -1;
    for (const auto& r : *rows) {
      Entry e;
      auto pk = jwt::b64url_decode(r.text(1));
      if (!pk || pk->size() != e.pk.size()) continue;
      std::memcpy(e.pk.data(), pk->data(), e.pk.size());
      e.created_at = r.integer(3);
      e.retired_at = r.opt_integer(4);
      if (!e.retired_at) {
        e.sk = open_box(secret_, r.text(2));
        if (!e.sk)
          co_return Error::internal("signing key " + r.text(0) +
                                    " cannot be opened with this server secret: every node must share auth.secret");
        if (e.created_at >= current_created) {
          current_created = e.created_at;
          current = r.text(0);
        }
      }
      keys.emplace(r.text(0), std::move(e));
    }
    if (current.empty() && attempt == 0) {
      auto made = co_await insert_new_key(db_, now);
      if (!made.ok()) co_return made.error();
      continue;
    }
    std::unique_lock lock(mu_);
    keys_ = std::move(keys);
    current_ = current;
    co_return Status{};
  }
  co_return Error::internal("no current signing key");
}

asio::awaitable<Result<std::string>> KeyRing::rotate() {
  int64_t now = now_ms();
  auto tx = co_await db_.begin();
  if (!tx.ok()) co_return tx.error();
  auto retired = co_await (*tx)->exec("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL", {now});
  if (!retired.ok()) co_return retired.error();
  auto made = co_await insert_new_key(**tx, now + 1);
  if (!made.ok()) co_return made.error();
  auto committed = co_await (*tx)->commit();
  if (!committed.ok()) co_return committed.error();
  auto loaded = co_await reload();
  if (!loaded.ok()) co_return loaded.error();
  std::shared_lock lock(mu_);
  co_return current_;
}

std::optional<KeyRing::Signer> KeyRing::signer() const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(current_);
  if (it == keys_.end() || !it->second.sk) return std::nullopt;
  return Signer{current_, *it->second.sk};
}

std::optional<jwt::PublicKey> KeyRing::public_key(std::string_view kid) const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(std::string(kid));
  if (it == keys_.end() || !still_verifies(it->second, now_ms())) return std::nullopt;
  return it->second.pk;
}

js::object KeyRing::jwks(int64_t now) const {
  js::array keys;
  std::shared_lock lock(mu_);
  for (const auto& [kid, e] : keys_) {
    if (!still_verifies(e, now)) continue;
    keys.push_back(js::object{{"kty", "OKP"},
                              {"crv", "Ed25519"},
                              {"use", "sig"},
                              {"alg", "EdDSA"},
                              {"kid", kid},
                              {"x", jwt::b64url_encode(std::string_view(reinterpret_cast<const char*>(e.pk.data()), e.pk.size()))}});
  }
  return js::object{{"keys", std::move(keys)}};
}

bool KeyRing::loaded() const {
  std::shared_lock lock(mu_);
  return !current_.empty();
}

}  // namespace harmar::auth
