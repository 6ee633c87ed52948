// Image captchas: the PNG decodes (libpng reads it back) at the advertised size, two captchas of
// the same text differ, and verification is single use, case-insensitive and expiring.
#include <gtest/gtest.h>
#include <png.h>

#include <cctype>
#include <set>
#include <thread>

#include "auth/captcha.hpp"
#include "auth/captcha_png.hpp"
#include "support/test_support.hpp"

namespace harmar::auth {
namespace {

struct Decoded {
  int width = 0, height = 0;
  std::vector<unsigned char> rgb;
};

std::optional<Decoded> decode_png(const std::string& png) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, png.data(), png.size())) return std::nullopt;
  image.format = PNG_FORMAT_RGB;
  Decoded d;
  d.width = static_cast<int>(image.width);
  d.height = static_cast<int>(image.height);
  d.rgb.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, d.rgb.data(), 0, nullptr)) return std::nullopt;
  return d;
}

TEST(CaptchaPng, decodes_with_libpng_at_the_advertised_size) {
  std::string png = render_captcha_png("AC7K9");
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  auto d = decode_png(png);
  ASSERT_TRUE(d.has_value()) << "libpng could not read the image back";
  EXPECT_EQ(d->width, kCaptchaWidth);
  EXPECT_EQ(d->height, kCaptchaHeight);
  // Ink and paper: the image is not blank, it has dark (text) and light (background) pixels.
  int dark = 0, light = 0;
  for (std::size_t i = 0; i + 2 < d->rgb.size(); i += 3) {
    int lum = (d->rgb[i] + d->rgb[i + 1] + d->rgb[i + 2]) / 3;
    dark += lum < 100;
    light += lum > 190;
  }
  int pixels = kCaptchaWidth * kCaptchaHeight;
  EXPECT_GT(dark, pixels / 40) << "too little ink for five glyphs";
  EXPECT_GT(light, pixels / 3) << "the background should dominate";
}

TEST(CaptchaPng, the_same_text_renders_differently_each_time) {
  auto a = decode_png(render_captcha_png("HJKMN"));
  auto b = decode_png(render_captcha_png("HJKMN"));
  ASSERT_TRUE(a && b);
  std::size_t differing = 0;
  for (std::size_t i = 0; i < a->rgb.size(); ++i) differing += a->rgb[i] != b->rgb[i];
  EXPECT_GT(differing, a->rgb.size() / 4) << "distortion and noise should change most pixels";
}

TEST(CaptchaPng, every_alphabet_character_and_length_renders) {
  for (char c : kCaptchaAlphabet) EXPECT_TRUE(decode_png(render_captcha_png(std::string(4, c))).has_value()) << c;
  EXPECT_TRUE(decode_png(render_captcha_png("ACEFHJKM")).has_value());
  EXPECT_THROW(render_captcha_png("0"), std::invalid_argument);
  EXPECT_THROW(render_captcha_png(""), std::invalid_argument);
}

TEST(CaptchaText, uses_only_the_unambiguous_alphabet_and_varies) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    std::string t = random_captcha_text(5);
    ASSERT_EQ(t.size(), 5u);
    for (char c : t) EXPECT_NE(kCaptchaAlphabet.find(c), std::string_view::npos) << c;
    for (char ambiguous : std::string("0O1IL2Z5S6G8BDQ")) EXPECT_EQ(t.find(ambiguous), std::string::npos);
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 190u);
}

struct CaptchaFixture {
  std::unique_ptr<store::Kv> kv = std::move(store::Kv::open("")).value();
  CaptchaService make(int64_t ttl_ms = 60'000, int per_ip = 100) {
    CaptchaSettings s;
    s.ttl_ms = ttl_ms;
    s.per_ip_per_minute = per_ip;
    return CaptchaService(s, *kv);
  }
};

TEST(Captcha, the_right_answer_passes_once_and_case_and_spaces_do_not_matter) {
  CaptchaFixture f;
  auto svc = f.make();
  auto c = testing::run(svc.create("10.0.0.1"));
  ASSERT_TRUE(c.ok()) << c.error().detail;
  EXPECT_TRUE(decode_png(c->png).has_value());
  std::string answer = c->answer;
  for (char& ch : answer) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  answer.insert(2, " ");
  EXPECT_TRUE(testing::run(svc.verify(c->id, answer)));
  EXPECT_FALSE(testing::run(svc.verify(c->id, c->answer))) << "a solved captcha is spent";
}

TEST(Captcha, a_wrong_answer_spends_the_captcha) {
  CaptchaFixture f;
  auto svc = f.make();
  auto c = testing::run(svc.create("10.0.0.1"));
  ASSERT_TRUE(c.ok());
  std::string wrong = c->answer == "AAAAA" ? "CCCCC" : "AAAAA";
  EXPECT_FALSE(testing::run(svc.verify(c->id, wrong)));
  EXPECT_FALSE(testing::run(svc.verify(c->id, c->answer))) << "one guess per captcha";
}

TEST(Captcha, unknown_malformed_and_expired_captchas_fail) {
  CaptchaFixture f;
  auto svc = f.make(/*ttl_ms=*/150);
  EXPECT_FALSE(testing::run(svc.verify("no-such-captcha", "ACEFH")));
  EXPECT_FALSE(testing::run(svc.verify("", "ACEFH")));
  EXPECT_FALSE(testing::run(svc.verify(std::string(500, 'a'), "ACEFH")));
  EXPECT_FALSE(testing::run(svc.verify("bad id with spaces", "ACEFH")));
  auto c = testing::run(svc.create("10.0.0.1"));
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(testing::run(svc.verify(c->id, "")));  // spends it too
  auto d = testing::run(svc.create("10.0.0.1"));
  ASSERT_TRUE(d.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(testing::run(svc.verify(d->id, d->answer))) << "expired";
}

TEST(Captcha, the_answer_is_not_stored_in_clear) {
  CaptchaFixture f;
  auto svc = f.make();
  auto c = testing::run(svc.create("10.0.0.1"));
  ASSERT_TRUE(c.ok());
  auto stored = testing::run(f.kv->get("captcha:" + c->id));
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->find(c->answer), std::string::npos);
  EXPECT_EQ((*stored)->size(), 64u);  // a SHA-256 hex digest
}

TEST(Captcha, handing_out_captchas_is_rate_limited_per_ip) {
  CaptchaFixture f;
  auto svc = f.make(60'000, /*per_ip=*/3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(testing::run(svc.create("10.0.0.9")).ok());
  auto refused = testing::run(svc.create("10.0.0.9"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().status, 429);
  EXPECT_GT(refused.error().retry_after_s, 0);
  EXPECT_TRUE(testing::run(svc.create("10.0.0.10")).ok()) << "another address has its own budget";
}

}  // namespace
}  // namespace harmar::auth
