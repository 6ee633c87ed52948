#include "net/router.hpp"

#include <stdexcept>

namespace harmar::net {

struct Router::Node {
  std::string literal;  // for literal children
  std::string param;    // for a parameter child: its name
  std::vector<std::unique_ptr<Node>> literals;
  std::unique_ptr<Node> param_child;
  std::unique_ptr<Node> rest_child;  // "{name...}"
  const Route* routes[kMethodCount] = {};
  uint16_t allowed = 0;
};

Router::Router() : root_(std::make_unique<Node>()) {}
Router::~Router() = default;

namespace {

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path[0] != '/') throw std::invalid_argument("route pattern must start with '/'");
  std::size_t i = 1;
  while (true) {
    auto slash = path.find('/', i);
    out.push_back(path.substr(i, slash == std::string_view::npos ? std::string_view::npos : slash - i));
    if (slash == std::string_view::npos) break;
    i = slash + 1;
  }
  return out;
}

Handler fold(Handler h, const std::vector<Middleware>& mws) {
  for (auto it = mws.rbegin(); it != mws.rend(); ++it) {
    h = [mw = *it, next = std::move(h)](Request& req) -> asio::awaitable<Response> { return mw(req, next); };
  }
  return h;
}

}  // namespace

Route& Router::add(Method m, std::string pattern, Handler h, RouteOptions opts) {
  Node* n = root_.get();
  bool literal_only = true;
  auto segs = split(pattern);
  for (std::size_t i = 0; i < segs.size(); ++i) {
    std::string_view s = segs[i];
    if (s.size() >= 2 && s.front() == '{' && s.back() == '}') {
      literal_only = false;
      std::string name(s.substr(1, s.size() - 2));
      if (name.size() > 3 && name.compare(name.size() - 3, 3, "...") == 0) {
        if (i + 1 != segs.size()) throw std::invalid_argument("{name...} must be the last segment: " + pattern);
        if (!n->rest_child) {
          n->rest_child = std::make_unique<Node>();
          n->rest_child->param = name.substr(0, name.size() - 3);
        }
        n = n->rest_child.get();
      } else {
        if (!n->param_child) {
          n->param_child = std::make_unique<Node>();
          n->param_child->param = name;
        } else if (n->param_child->param != name) {
          throw std::invalid_argument("conflicting parameter names at the same position: " + pattern);
        }
        n = n->param_child.get();
      }
    } else {
      Node* next = nullptr;
      for (auto& c : n->literals)
        if (c->literal == s) next = c.get();
      if (!next) {
        n->literals.push_back(std::make_unique<Node>());
        next = n->literals.back().get();
        next->literal = std::string(s);
      }
      n = next;
    }
  }
  auto idx = static_cast<std::size_t>(m);
  if (n->routes[idx]) throw std::invalid_argument("route defined twice: " + std::string(method_name(m)) + " " + pattern);
  Route& r = routes_.emplace_back();
  r.method = m;
  r.pattern = pattern;
  r.handler = fold(std::move(h), opts.middleware);
  r.options = std::move(opts);
  n->routes[idx] = &r;
  n->allowed |= uint16_t(1) << idx;
  if (literal_only) literal_.emplace(pattern, n);
  return r;
}

Route& Router::websocket(std::string pattern, WsHandler h, RouteOptions opts) {
  Route& r = add(Method::Get, std::move(pattern), nullptr, std::move(opts));
  r.websocket = std::move(h);
  return r;
}

namespace {

const Route* pick(const Route* const* routes, Method m) {
  const Route* r = routes[static_cast<std::size_t>(m)];
  if (!r && m == Method::Head) r = routes[static_cast<std::size_t>(Method::Get)];
  return r;
}

}  // namespace

bool Router::walk(const Node& n, const std::string_view* segs, std::size_t count, std::size_t i,
                  const char* path_end, Method m, Request* req, Match& out) const {
  if (i == count) {
    if (!n.allowed) return false;
    out.allowed |= n.allowed;
    out.route = pick(n.routes, m);
    return out.route != nullptr;
  }
  std::string_view seg = segs[i];
  for (const auto& c : n.literals)
    if (c->literal == seg && walk(*c, segs, count, i + 1, path_end, m, req, out)) return true;
  if (n.param_child && !seg.empty() && walk(*n.param_child, segs, count, i + 1, path_end, m, req, out)) {
    if (req) {
      auto decoded = percent_decode(seg);
      req->add_param(n.param_child->param, decoded ? std::move(*decoded) : std::string(seg));
    }
    return true;
  }
  if (n.rest_child && n.rest_child->allowed) {
    const Node& c = *n.rest_child;
    out.allowed |= c.allowed;
    if (const Route* r = pick(c.routes, m)) {
      out.route = r;
      if (req) {
        std::string_view rest(seg.data(), static_cast<std::size_t>(path_end - seg.data()));
        auto decoded = percent_decode(rest);
        req->add_param(c.param, decoded ? std::move(*decoded) : std::string(rest));
      }
      return true;
    }
  }
  return false;
}

Match Router::match(Method m, std::string_view path, Request* req) const {
  Match out;
  if (path.empty() || path[0] != '/') return out;
  if (auto it = literal_.find(path); it != literal_.end()) {
    const Node& n = *it->second;
    out.allowed = n.allowed;
    if ((out.route = pick(n.routes, m))) return out;
  }
  // Split into at most kMaxSegments segments without allocating; deeper paths match nothing.
  constexpr std::size_t kMaxSegments = 32;
  std::string_view segs[kMaxSegments];
  std::size_t count = 0;
  std::size_t pos = 1;
  while (true) {
    if (count == kMaxSegments) return Match{};
    auto slash = path.find('/', pos);
    segs[count++] = path.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  Match walked;
  walked.allowed = out.allowed;
  walk(*root_, segs, count, 0, path.data() + path.size(), m, req, walked);
  return walked;
}

std::string allow_header(uint16_t allowed) {
  std::string out;
  for (std::size_t i = 0; i < kMethodCount; ++i) {
    if (!(allowed & (1u << i))) continue;
    if (!out.empty()) out += ", ";
    out += method_name(static_cast<Method>(i));
    if (static_cast<Method>(i) == Method::Get && !(allowed & (1u << static_cast<int>(Method::Head)))) out += ", HEAD";
  }
  if (!out.empty() && !(allowed & (1u << static_cast<int>(Method::Options)))) out += ", OPTIONS";
  return out;
}

}  // namespace harmar::net
