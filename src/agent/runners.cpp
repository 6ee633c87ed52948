#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "agent/client.hpp"
#include "agent/runner.hpp"

extern char** environ;

namespace harmar::agent {

namespace js = boost::json;

namespace {

Outcome bad_payload(std::string why) {
  Outcome o;
  o.succeeded = false;
  o.error = "invalid payload: " + why;
  o.retry = false;
  return o;
}

class EchoRunner final : public Runner {
 public:
  Outcome run(TaskContext& ctx) override {
    Outcome o;
    if (ctx.payload.is_object()) {
      const auto& p = ctx.payload.get_object();
      if (auto* s = p.if_contains("sleep_ms"); s && s->is_int64()) {
        auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(s->get_int64());
        while (std::chrono::steady_clock::now() < until) {
          if (ctx.is_cancelled()) {
            o.succeeded = false;
            o.error = "cancelled";
            return o;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
      if (auto* f = p.if_contains("fail"); f && f->is_string()) {
        o.succeeded = false;
        o.error = std::string(f->get_string());
        return o;
      }
    }
    o.result = ctx.payload;
    return o;
  }
};

class ShellRunner final : public Runner {
 public:
  Outcome run(TaskContext& ctx) override {
    if (!ctx.payload.is_object()) return bad_payload("shell wants an object with command or argv");
    const auto& p = ctx.payload.get_object();
    std::vector<std::string> argv;
    if (auto* c = p.if_contains("command"); c && c->is_string()) {
      argv = {"/bin/sh", "-c", std::string(c->get_string())};
    } else if (auto* a = p.if_contains("argv"); a && a->is_array() && !a->get_array().empty()) {
      for (const auto& x : a->get_array()) {
        if (!x.is_string()) return bad_payload("argv must be strings");
        argv.emplace_back(x.get_string());
      }
    } else {
      return bad_payload("shell needs command (a string) or argv (an array of strings)");
    }
    if (auto* a = p.if_contains("args"); a && a->is_array())
      for (const auto& x : a->get_array())
        if (x.is_string()) argv.emplace_back(x.get_string());
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    if (auto* e = p.if_contains("env"); e && e->is_object())
      for (const auto& kv : e->get_object())
        if (kv.value().is_string()) env.push_back(std::string(kv.key()) + "=" + std::string(kv.value().get_string()));
    std::string cwd;
    if (auto* c = p.if_contains("cwd"); c && c->is_string()) cwd = std::string(c->get_string());
    int64_t timeout_s = ctx.timeout_s;
    if (auto* t = p.if_contains("timeout_s"); t && t->is_int64() && t->get_int64() > 0)
      timeout_s = timeout_s > 0 ? std::min(timeout_s, t->get_int64()) : t->get_int64();
    return spawn(ctx, argv, env, cwd, timeout_s);
  }

 private:
  static Outcome spawn(TaskContext& ctx, const std::vector<std::string>& argv, const std::vector<std::string>& env,
                       const std::string& cwd, int64_t timeout_s) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      Outcome o;
      o.succeeded = false;
      o.error = std::string("pipe: ") + std::strerror(errno);
      return o;
    }
    std::vector<char*> cargv, cenv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      // The child: its own process group (so a kill reaches its children too), signals as a
      // fresh process has them (the agent blocks SIGTERM for sigwait), output into our pipes.
      setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      signal(SIGPIPE, SIG_DFL);
      dup2(out[1], 1);
      dup2(err[1], 2);
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, 0);
      // Nothing else of ours goes along: an inherited server connection would outlive a killed
      // agent (its long-poll still open, so it could still be handed work), and another task's
      // pipe would never see its end while this one runs.
      close_range(3, ~0U, 0);
      if (!cwd.empty() && chdir(cwd.c_str()) != 0) {
        dprintf(2, "cannot chdir to %s: %s\n", cwd.c_str(), std::strerror(errno));
        _exit(126);
      }
      execvpe(cargv[0], cargv.data(), cenv.data());
      dprintf(2, "cannot run %s: %s\n", cargv[0], std::strerror(errno));
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
      close(out[0]);
      close(err[0]);
      Outcome o;
      o.succeeded = false;
      o.error = std::string("fork: ") + std::strerror(errno);
      return o;
    }
    setpgid(pid, pid);  // also here: whichever of parent and child runs first
    std::string captured[2];
    bool truncated = false;
    bool open_fd[2] = {true, true};
    int fds[2] = {out[0], err[0]};
    auto start = std::chrono::steady_clock::now();
    std::optional<std::chrono::steady_clock::time_point> term_sent;
    std::string why_killed;
    char buf[16384];
    while (open_fd[0] || open_fd[1]) {
      pollfd pf[2];
      int n = 0;
      int map[2];
      for (int i = 0; i < 2; ++i)
        if (open_fd[i]) {
          pf[n] = {fds[i], POLLIN, 0};
          map[n++] = i;
        }
      ::poll(pf, static_cast<nfds_t>(n), 100);
      for (int k = 0; k < n; ++k) {
        if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t got = ::read(pf[k].fd, buf, sizeof buf);
        int i = map[k];
        if (got <= 0) {
          open_fd[i] = false;
          continue;
        }
        std::string_view chunk(buf, static_cast<std::size_t>(got));
        std::size_t room = ctx.max_output > captured[i].size() ? ctx.max_output - captured[i].size() : 0;
        if (chunk.size() > room) truncated = true;
        captured[i].append(chunk.substr(0, room));
        if (ctx.log && room > 0) ctx.log(chunk.substr(0, room));
      }
      auto now = std::chrono::steady_clock::now();
      bool timed_out = timeout_s > 0 && now - start >= std::chrono::seconds(timeout_s);
      if (!term_sent && (timed_out || ctx.is_cancelled())) {
        why_killed = timed_out ? "timed out after " + std::to_string(timeout_s) + " s" : "cancelled";
        kill(-pid, SIGTERM);
        term_sent = now;
      } else if (term_sent && now - *term_sent >= std::chrono::seconds(3)) {
        kill(-pid, SIGKILL);  // it ignored TERM; also closes pipes its children still hold
      }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (term_sent) kill(-pid, SIGKILL);  // leftovers of the group
    close(out[0]);
    close(err[0]);
    Outcome o;
    js::object r;
    if (WIFEXITED(status)) {
      r["exit_code"] = WEXITSTATUS(status);
    } else {
      r["exit_code"] = nullptr;
      r["signal"] = WTERMSIG(status);
    }
    r["stdout"] = captured[0];
    r["stderr"] = captured[1];
    r["truncated"] = truncated;
    o.result = std::move(r);
    if (!why_killed.empty()) {
      o.succeeded = false;
      o.error = why_killed;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      o.succeeded = false;
      o.error = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                  : "killed by signal " + std::to_string(WTERMSIG(status));
    }
    return o;
  }
};

class HttpRunner final : public Runner {
 public:
  Outcome run(TaskContext& ctx) override {
    if (!ctx.payload.is_object()) return bad_payload("http wants an object with url");
    const auto& p = ctx.payload.get_object();
    auto* url = p.if_contains("url");
    if (!url || !url->is_string()) return bad_payload("http needs url");
    std::string u(url->get_string());
    if (!u.starts_with("http://") && !u.starts_with("https://")) return bad_payload("url must be http:// or https://");
    std::string method = "GET";
    if (auto* m = p.if_contains("method"); m && m->is_string()) method = std::string(m->get_string());
    std::vector<std::string> headers;
    if (auto* h = p.if_contains("headers"); h && h->is_object())
      for (const auto& kv : h->get_object())
        if (kv.value().is_string()) headers.push_back(std::string(kv.key()) + ": " + std::string(kv.value().get_string()));
    std::string body;
    if (auto* b = p.if_contains("body")) {
      if (b->is_string()) {
        body = std::string(b->get_string());
      } else if (!b->is_null()) {
        body = js::serialize(*b);
        headers.push_back("Content-Type: application/json");
      }
    }
    int64_t timeout_s = ctx.timeout_s > 0 ? ctx.timeout_s : 30;
    if (auto* t = p.if_contains("timeout_s"); t && t->is_int64() && t->get_int64() > 0) timeout_s = t->get_int64();
    HttpClient client("", "");
    std::string resp_headers;
    auto r = client.raw(method, u, headers, body, static_cast<long>(timeout_s * 1000), ctx.max_output, ctx.cancelled,
                        &resp_headers);
    Outcome o;
    if (r.status == 0) {
      o.succeeded = false;
      o.error = r.aborted ? "cancelled" : r.error;
      return o;
    }
    js::object hs;
    std::size_t pos = 0;
    while (pos < resp_headers.size()) {
      auto end = resp_headers.find("\r\n", pos);
      if (end == std::string::npos) end = resp_headers.size();
      std::string line = resp_headers.substr(pos, end - pos);
      pos = end + 2;
      auto colon = line.find(':');
      if (colon == std::string::npos) {
        if (line.starts_with("HTTP/")) hs.clear();  // a new response (after a 100 or a redirect)
        continue;
      }
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      hs[name] = value;
    }
    o.result = js::object{{"status", r.status}, {"headers", std::move(hs)}, {"body", r.body}};
    if (auto* f = p.if_contains("fail_on_status"); f && f->is_bool() && f->get_bool() && r.status >= 400) {
      o.succeeded = false;
      o.error = "HTTP status " + std::to_string(r.status);
    }
    return o;
  }
};

}  // namespace

Runners default_runners() {
  Runners r;
  r["echo"] = std::make_shared<EchoRunner>();
  r["shell"] = std::make_shared<ShellRunner>();
  r["http"] = std::make_shared<HttpRunner>();
  return r;
}

}  // namespace harmar::agent
