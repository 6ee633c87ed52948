#include "auth/captcha_png.hpp"

#include <png.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

namespace harmar::auth {
namespace {

constexpr int W = kCaptchaWidth;
constexpr int H = kCaptchaHeight;
constexpr double kPi = 3.14159265358979323846;

// Our font: 5 columns x 7 rows per glyph, '#' is ink. Strokes join neighbouring ink cells, so the
// glyphs read as pen strokes rather than pixels once scaled and bent.
struct Glyph {
  char ch;
  std::array<const char*, 7> rows;
};
constexpr Glyph kFont[] = {
    {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'C', {".####", "#....", "#....", "#....", "#....", "#....", ".####"}},
    {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
    {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
    {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'N', {"#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"}},
    {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'V', {"#...#", "#...#", "#...#", "#...#", ".#.#.", ".#.#.", "..#.."}},
    {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "##.##", "#...#"}},
    {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
    {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
    {'3', {"####.", "....#", "....#", ".###.", "....#", "....#", "####."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
};

const Glyph* glyph_for(char c) {
  for (const auto& g : kFont)
    if (g.ch == c) return &g;
  return nullptr;
}

struct Color {
  double r, g, b;
};

struct Point {
  double x, y;
};

class Canvas {
 public:
  Canvas() : px_(static_cast<std::size_t>(W) * H * 3, 0.0) {}

  void blend(int x, int y, const Color& c, double a) {
    if (x < 0 || y < 0 || x >= W || y >= H || a <= 0) return;
    a = std::min(a, 1.0);
    double* p = &px_[(static_cast<std::size_t>(y) * W + x) * 3];
    p[0] = p[0] * (1 - a) + c.r * a;
    p[1] = p[1] * (1 - a) + c.g * a;
    p[2] = p[2] * (1 - a) + c.b * a;
  }

  void set(int x, int y, const Color& c) { blend(x, y, c, 1.0); }

  // A line segment with round ends, `radius` thick on each side, anti-aliased.
  void capsule(Point a, Point b, double radius, const Color& c) {
    int x0 = static_cast<int>(std::floor(std::min(a.x, b.x) - radius - 1));
    int x1 = static_cast<int>(std::ceil(std::max(a.x, b.x) + radius + 1));
    int y0 = static_cast<int>(std::floor(std::min(a.y, b.y) - radius - 1));
    int y1 = static_cast<int>(std::ceil(std::max(a.y, b.y) + radius + 1));
    double dx = b.x - a.x, dy = b.y - a.y;
    double len2 = dx * dx + dy * dy;
    for (int y = std::max(y0, 0); y <= std::min(y1, H - 1); ++y) {
      for (int x = std::max(x0, 0); x <= std::min(x1, W - 1); ++x) {
        double px = x + 0.5 - a.x, py = y + 0.5 - a.y;
        double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
        double ex = px - t * dx, ey = py - t * dy;
        double d = std::sqrt(ex * ex + ey * ey);
        blend(x, y, c, radius + 0.5 - d);
      }
    }
  }

  // Bends the whole picture: each pixel is read from a place moved by two sine waves.
  void warp(double ax, double px, double phase_x, double ay, double py, double phase_y) {
    std::vector<double> src = px_;
    for (int y = 0; y < H; ++y) {
      for (int x = 0; x < W; ++x) {
        double sx = x + ax * std::sin(2 * kPi * y / py + phase_x);
        double sy = y + ay * std::sin(2 * kPi * x / px + phase_y);
        sx = std::clamp(sx, 0.0, W - 1.001);
        sy = std::clamp(sy, 0.0, H - 1.001);
        int ix = static_cast<int>(sx), iy = static_cast<int>(sy);
        double fx = sx - ix, fy = sy - iy;
        for (int ch = 0; ch < 3; ++ch) {
          auto at = [&](int xx, int yy) { return src[(static_cast<std::size_t>(yy) * W + xx) * 3 + ch]; };
          double top = at(ix, iy) * (1 - fx) + at(ix + 1, iy) * fx;
          double bottom = at(ix, iy + 1) * (1 - fx) + at(ix + 1, iy + 1) * fx;
          px_[(static_cast<std::size_t>(y) * W + x) * 3 + ch] = top * (1 - fy) + bottom * fy;
        }
      }
    }
  }

  std::vector<unsigned char> bytes() const {
    std::vector<unsigned char> out(px_.size());
    for (std::size_t i = 0; i < px_.size(); ++i)
      out[i] = static_cast<unsigned char>(std::clamp(std::lround(px_[i]), 0L, 255L));
    return out;
  }

 private:
  std::vector<double> px_;
};

class Rng {
 public:
  Rng() {
    std::array<uint32_t, 8> seed;
    randombytes_buf(seed.data(), sizeof(seed));
    std::seed_seq seq(seed.begin(), seed.end());
    gen_.seed(seq);
  }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(gen_); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }

 private:
  std::mt19937_64 gen_;
};

Color light(Rng& r) { return {r.uniform(215, 250), r.uniform(215, 250), r.uniform(215, 250)}; }
Color dark(Rng& r) { return {r.uniform(10, 110), r.uniform(10, 110), r.uniform(10, 110)}; }
Color any(Rng& r) { return {r.uniform(0, 255), r.uniform(0, 255), r.uniform(0, 255)}; }

void background(Canvas& c, Rng& r) {
  Color a = light(r), b = light(r);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      double t = (x + y * 0.5) / (W + H * 0.5);
      c.set(x, y, {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t});
    }
}

// A quadratic Bézier curve from the left part of the image to the right.
void curve(Canvas& c, Rng& r, double radius, const Color& color) {
  Point p0{r.uniform(-10, W * 0.3), r.uniform(5, H - 5)};
  Point p1{r.uniform(W * 0.3, W * 0.7), r.uniform(-H * 0.5, H * 1.5)};
  Point p2{r.uniform(W * 0.7, W + 10), r.uniform(5, H - 5)};
  Point prev = p0;
  for (int i = 1; i <= 40; ++i) {
    double t = i / 40.0, u = 1 - t;
    Point p{u * u * p0.x + 2 * u * t * p1.x + t * t * p2.x, u * u * p0.y + 2 * u * t * p1.y + t * t * p2.y};
    c.capsule(prev, p, radius, color);
    prev = p;
  }
}

void draw_glyph(Canvas& c, const Glyph& g, Point center, double scale, double angle, double shear, double stretch,
                double radius, const Color& color) {
  double cs = std::cos(angle), sn = std::sin(angle);
  auto map = [&](double gx, double gy) {
    // Cell centres relative to the glyph's middle, sheared, stretched, rotated, scaled.
    double x = (gx + 0.5 - 2.5) * scale * stretch;
    double y = (gy + 0.5 - 3.5) * scale;
    x += shear * y;
    return Point{center.x + x * cs - y * sn, center.y + x * sn + y * cs};
  };
  auto ink = [&](int x, int y) { return x >= 0 && x < 5 && y >= 0 && y < 7 && g.rows[y][x] == '#'; };
  for (int y = 0; y < 7; ++y) {
    for (int x = 0; x < 5; ++x) {
      if (!ink(x, y)) continue;
      Point p = map(x, y);
      bool joined = false;
      if (ink(x + 1, y)) c.capsule(p, map(x + 1, y), radius, color), joined = true;
      if (ink(x, y + 1)) c.capsule(p, map(x, y + 1), radius, color), joined = true;
      // Diagonals only where no orthogonal path joins the two cells (keeps corners crisp).
      if (ink(x + 1, y + 1) && !ink(x + 1, y) && !ink(x, y + 1)) c.capsule(p, map(x + 1, y + 1), radius, color), joined = true;
      if (ink(x - 1, y + 1) && !ink(x - 1, y) && !ink(x, y + 1)) c.capsule(p, map(x - 1, y + 1), radius, color), joined = true;
      if (!joined) c.capsule(p, p, radius, color);
    }
  }
}

std::string write_png(const std::vector<unsigned char>& rgb) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = W;
  image.height = H;
  image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, rgb.data(), W * 3, nullptr))
    throw std::runtime_error(std::string("png size: ") + image.message);
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, rgb.data(), W * 3, nullptr))
    throw std::runtime_error(std::string("png write: ") + image.message);
  out.resize(size);
  return out;
}

}  // namespace

std::string render_captcha_png(std::string_view text) {
  if (text.empty() || text.size() > 8) throw std::invalid_argument("captcha text must be 1..8 characters");
  Rng r;
  Canvas c;
  background(c, r);
  for (int i = 0, n = r.integer(3, 5); i < n; ++i) curve(c, r, r.uniform(0.6, 1.2), any(r));  // behind the text

  int n = static_cast<int>(text.size());
  double margin = 14;
  double advance = (W - 2 * margin) / n;
  double scale = std::min(6.0, advance / 5.4);
  double radius = scale * r.uniform(0.42, 0.55);
  for (int i = 0; i < n; ++i) {
    const Glyph* g = glyph_for(text[static_cast<std::size_t>(i)]);
    if (!g) throw std::invalid_argument("captcha text holds a character outside the alphabet");
    Point center{margin + advance * (i + 0.5) + r.uniform(-3, 3), H / 2.0 + r.uniform(-6, 6)};
    draw_glyph(c, *g, center, scale * r.uniform(0.9, 1.1), r.uniform(-0.38, 0.38), r.uniform(-0.3, 0.3),
               r.uniform(0.85, 1.15), radius, dark(r));
  }
  for (int i = 0, m = r.integer(2, 3); i < m; ++i) curve(c, r, r.uniform(0.8, 1.4), dark(r));  // across it

  c.warp(r.uniform(2, 4), r.uniform(60, 110), r.uniform(0, 2 * kPi), r.uniform(2.5, 5), r.uniform(30, 50),
         r.uniform(0, 2 * kPi));
  for (int i = 0, dots = W * H / 22; i < dots; ++i) c.set(r.integer(0, W - 1), r.integer(0, H - 1), any(r));
  return write_png(c.bytes());
}

}  // namespace harmar::auth
