#pragma once
// Renders captcha text as a PNG: our own 5x7 bitmap font, each glyph scaled, rotated and sheared
// on its own, the whole text bent by two sine waves, crossed by curves in the text's colours and
// sprinkled with noise. Written with libpng's simplified API.
#include <cstdint>
#include <string>
#include <string_view>

namespace harmar::auth {

// The characters captchas use: none that reads like another once distorted (no 0/O/D/Q, 1/I/L,
// 2/Z, 5/S, 6/G, 8/B).
inline constexpr std::string_view kCaptchaAlphabet = "ACEFHJKMNPRTUVWXY3479";

inline constexpr int kCaptchaWidth = 200;
inline constexpr int kCaptchaHeight = 70;

// PNG bytes (RGB, kCaptchaWidth x kCaptchaHeight) showing `text` (characters of
// kCaptchaAlphabet, 1..8 of them). Two calls with the same text differ (random distortion).
std::string render_captcha_png(std::string_view text);

}  // namespace harmar::auth
