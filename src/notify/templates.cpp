#include "notify/templates.hpp"

#include <kainjow/mustache.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace harmar::notify {
namespace {

namespace mu = kainjow::mustache;

// A link is either given whole ({{link}}) or built from public_url and the token.
constexpr const char* kVerifyText = R"(Hello{{#name}} {{name}}{{/name}},

please confirm that {{to}} is your email address for {{product}} by opening this link:

{{#link}}{{link}}{{/link}}{{^link}}{{public_url}}/verify-email?token={{token}}{{/link}}

The link works once{{#expires}} and expires in {{expires}}{{/expires}}.
If you did not create an account on {{product}}, you can ignore this mail.
)";

constexpr const char* kVerifyHtml = R"(<!doctype html>
<html><body style="font-family: sans-serif; line-height: 1.5">
<p>Hello{{#name}} {{name}}{{/name}},</p>
<p>please confirm that {{to}} is your email address for {{product}}:</p>
<p><a href="{{#link}}{{link}}{{/link}}{{^link}}{{public_url}}/verify-email?token={{token}}{{/link}}">Confirm my email address</a></p>
<p>The link works once{{#expires}} and expires in {{expires}}{{/expires}}.
If you did not create an account on {{product}}, you can ignore this mail.</p>
</body></html>
)";

constexpr const char* kResetText = R"(Hello{{#name}} {{name}}{{/name}},

someone asked to reset the password of the {{product}} account {{to}}.
To choose a new password, open this link:

{{#link}}{{link}}{{/link}}{{^link}}{{public_url}}/reset-password?token={{token}}{{/link}}

The link works once{{#expires}} and expires in {{expires}}{{/expires}}. Resetting the password signs
out every session of the account. If you did not ask for this, ignore this mail: your password
stays as it is.
)";

constexpr const char* kResetHtml = R"(<!doctype html>
<html><body style="font-family: sans-serif; line-height: 1.5">
<p>Hello{{#name}} {{name}}{{/name}},</p>
<p>someone asked to reset the password of the {{product}} account {{to}}.</p>
<p><a href="{{#link}}{{link}}{{/link}}{{^link}}{{public_url}}/reset-password?token={{token}}{{/link}}">Choose a new password</a></p>
<p>The link works once{{#expires}} and expires in {{expires}}{{/expires}}. Resetting the password
signs out every session of the account. If you did not ask for this, ignore this mail: your
password stays as it is.</p>
</body></html>
)";

// Notification templates (docs/mail.md "Notification templates"). task_url and device_url are
// added by the mailer from public_url; can_reply is set when replies come back (smtp.reply_address).
constexpr const char* kHtmlHead = R"(<!doctype html>
<html><body style="font-family: sans-serif; line-height: 1.5">
)";

constexpr const char* kTaskCreatedText = R"(Hello{{#name}} {{name}}{{/name}},

a task was created on {{product}}:

  Task:   {{task_id}}
  Type:   {{task_type}}{{#device_name}}
  Device: {{device_name}}{{/device_name}}{{#task_status}}
  Status: {{task_status}}{{/task_status}}

{{task_url}}
{{#can_reply}}
Reply to this mail to add a note to the task.
{{/can_reply}}
)";

constexpr const char* kTaskCreatedHtml = R"(<p>Hello{{#name}} {{name}}{{/name}},</p>
<p>a task was created on {{product}}:</p>
<table>
<tr><td>Task</td><td><a href="{{task_url}}">{{task_id}}</a></td></tr>
<tr><td>Type</td><td>{{task_type}}</td></tr>
{{#device_name}}<tr><td>Device</td><td>{{device_name}}</td></tr>{{/device_name}}
{{#task_status}}<tr><td>Status</td><td>{{task_status}}</td></tr>{{/task_status}}
</table>
{{#can_reply}}<p>Reply to this mail to add a note to the task.</p>{{/can_reply}}
</body></html>
)";

constexpr const char* kTaskCompletedText = R"(Hello{{#name}} {{name}}{{/name}},

the {{task_type}} task {{task_id}}{{#device_name}} on {{device_name}}{{/device_name}} completed{{#task_status}} ({{task_status}}){{/task_status}}.
{{#result}}
Result:
{{result}}
{{/result}}
{{task_url}}
{{#can_reply}}
Reply to this mail to add a note to the task.
{{/can_reply}}
)";

constexpr const char* kTaskCompletedHtml = R"(<p>Hello{{#name}} {{name}}{{/name}},</p>
<p>the {{task_type}} task <a href="{{task_url}}">{{task_id}}</a>{{#device_name}} on {{device_name}}{{/device_name}} completed{{#task_status}} ({{task_status}}){{/task_status}}.</p>
{{#result}}<pre>{{result}}</pre>{{/result}}
{{#can_reply}}<p>Reply to this mail to add a note to the task.</p>{{/can_reply}}
</body></html>
)";

constexpr const char* kTaskFailedText = R"(Hello{{#name}} {{name}}{{/name}},

the {{task_type}} task {{task_id}}{{#device_name}} on {{device_name}}{{/device_name}} failed{{#task_status}} (status {{task_status}}{{#attempts}}, after {{attempts}} attempts{{/attempts}}){{/task_status}}.
{{#error}}
Error:
{{error}}
{{/error}}
{{task_url}}
{{#can_reply}}
Reply to this mail to add a note to the task.
{{/can_reply}}
)";

constexpr const char* kTaskFailedHtml = R"(<p>Hello{{#name}} {{name}}{{/name}},</p>
<p>the {{task_type}} task <a href="{{task_url}}">{{task_id}}</a>{{#device_name}} on {{device_name}}{{/device_name}} failed{{#task_status}} (status {{task_status}}{{#attempts}}, after {{attempts}} attempts{{/attempts}}){{/task_status}}.</p>
{{#error}}<p>Error:</p><pre>{{error}}</pre>{{/error}}
{{#can_reply}}<p>Reply to this mail to add a note to the task.</p>{{/can_reply}}
</body></html>
)";

constexpr const char* kDeviceOnlineText = R"(Hello{{#name}} {{name}}{{/name}},

{{#device_name}}the device {{device_name}} is online again on {{product}}{{#last_seen_at}} (since {{last_seen_at}}){{/last_seen_at}}.{{/device_name}}{{^device_name}}{{body}}{{/device_name}}

{{device_url}}
{{#can_reply}}
Reply to this mail to give the device a task: the reply becomes a new "email" task on it.
{{/can_reply}}
)";

constexpr const char* kDeviceOnlineHtml = R"(<p>Hello{{#name}} {{name}}{{/name}},</p>
<p>{{#device_name}}the device <a href="{{device_url}}">{{device_name}}</a> is online again on {{product}}{{#last_seen_at}} (since {{last_seen_at}}){{/last_seen_at}}.{{/device_name}}{{^device_name}}<a href="{{device_url}}">{{body}}</a>{{/device_name}}</p>
{{#can_reply}}<p>Reply to this mail to give the device a task: the reply becomes a new "email" task on it.</p>{{/can_reply}}
</body></html>
)";

constexpr const char* kDeviceOfflineText = R"(Hello{{#name}} {{name}}{{/name}},

{{#device_name}}the device {{device_name}} went offline on {{product}}{{#last_seen_at}}; it was last seen at {{last_seen_at}}{{/last_seen_at}}.{{/device_name}}{{^device_name}}{{body}}{{/device_name}}

{{device_url}}
{{#can_reply}}
Reply to this mail to give the device a task: the reply becomes a new "email" task on it.
{{/can_reply}}
)";

constexpr const char* kDeviceOfflineHtml = R"(<p>Hello{{#name}} {{name}}{{/name}},</p>
<p>{{#device_name}}the device <a href="{{device_url}}">{{device_name}}</a> went offline on {{product}}{{#last_seen_at}}; it was last seen at {{last_seen_at}}{{/last_seen_at}}.{{/device_name}}{{^device_name}}<a href="{{device_url}}">{{body}}</a>{{/device_name}}</p>
{{#can_reply}}<p>Reply to this mail to give the device a task: the reply becomes a new "email" task on it.</p>{{/can_reply}}
</body></html>
)";

constexpr const char* kAnnouncementText = R"({{title}}

{{body}}
{{#link}}
{{link}}
{{/link}}
-- 
{{product}} · {{public_url}}
)";

constexpr const char* kAnnouncementHtml = R"(<h2>{{title}}</h2>
<p style="white-space: pre-wrap">{{body}}</p>
{{#link}}<p><a href="{{link}}">{{link}}</a></p>{{/link}}
<p style="color: #666">{{product}} · <a href="{{public_url}}">{{public_url}}</a></p>
</body></html>
)";

constexpr const char* kTestText = R"(This is a test mail from {{product}} ({{public_url}}).

It was sent to {{to}} with the email config {{config_id}}{{#smtp_host}} through {{smtp_host}}{{/smtp_host}}.
If you can read it, the mail settings work.
)";

std::string identity(const std::string& s) { return s; }

Result<std::string> render_one(const std::string& source, const TemplateVars& vars, bool html) {
  if (source.empty()) return std::string();
  mu::mustache tmpl(source);
  if (!tmpl.is_valid()) return Error::internal("template does not parse: " + tmpl.error_message());
  if (!html) tmpl.set_custom_escape(identity);
  mu::data data;
  for (const auto& [k, v] : vars) data.set(k, v);
  std::string out = tmpl.render(data);
  if (!tmpl.is_valid()) return Error::internal("template does not render: " + tmpl.error_message());
  return out;
}

std::optional<std::string> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Templates Templates::builtin() {
  Templates t;
  t.templates_["verify-email"] = {"Confirm your email address for {{product}}", kVerifyText, kVerifyHtml, {"token", "link"}};
  t.templates_["reset-password"] = {"Reset your {{product}} password", kResetText, kResetHtml, {"token", "link"}};
  auto html = [](const char* body) { return std::string(kHtmlHead) + body; };
  t.templates_["task-created"] = {"[{{product}}] Task created: {{task_type}}{{#device_name}} on {{device_name}}{{/device_name}}",
                                  kTaskCreatedText, html(kTaskCreatedHtml), {}};
  t.templates_["task-completed"] = {"[{{product}}] Task completed: {{task_type}}{{#device_name}} on {{device_name}}{{/device_name}}",
                                    kTaskCompletedText, html(kTaskCompletedHtml), {}};
  t.templates_["task-failed"] = {"[{{product}}] Task failed: {{task_type}}{{#device_name}} on {{device_name}}{{/device_name}}",
                                 kTaskFailedText, html(kTaskFailedHtml), {}};
  t.templates_["device-online"] = {"[{{product}}] {{#device_name}}{{device_name}} is online{{/device_name}}{{^device_name}}{{title}}{{/device_name}}", kDeviceOnlineText, html(kDeviceOnlineHtml), {}};
  t.templates_["device-offline"] = {"[{{product}}] {{#device_name}}{{device_name}} is offline{{/device_name}}{{^device_name}}{{title}}{{/device_name}}", kDeviceOfflineText, html(kDeviceOfflineHtml), {}};
  t.templates_["announcement"] = {"[{{product}}] {{title}}", kAnnouncementText, html(kAnnouncementHtml), {}};
  t.templates_["email-test"] = {"{{product}} test mail", kTestText, "", {}};
  return t;
}

Result<Templates> Templates::load(const std::string& dir) {
  Templates t = builtin();
  if (dir.empty()) return t;
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Error::validation("notify.templates_dir " + dir + " is not a directory");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".subject") continue;
    std::string name = entry.path().stem().string();
    Template tmpl;
    auto subject = read_file(entry.path());
    auto text = read_file(fs::path(dir) / (name + ".txt"));
    if (!subject || !text) return Error::validation("template " + name + " needs " + name + ".subject and " + name + ".txt");
    tmpl.subject = *subject;
    while (!tmpl.subject.empty() && (tmpl.subject.back() == '\n' || tmpl.subject.back() == '\r')) tmpl.subject.pop_back();
    tmpl.text = *text;
    if (auto html = read_file(fs::path(dir) / (name + ".html"))) tmpl.html = *html;
    if (auto builtin = t.templates_.find(name); builtin != t.templates_.end()) tmpl.secrets = builtin->second.secrets;
    if (auto secrets = read_file(fs::path(dir) / (name + ".secrets"))) {
      std::istringstream words(*secrets);
      for (std::string w; words >> w;) tmpl.secrets.insert(w);
    }
    for (const std::string* part : {&tmpl.subject, &tmpl.text, &tmpl.html}) {
      mu::mustache check(*part);
      if (!check.is_valid()) return Error::validation("template " + name + " does not parse: " + check.error_message());
    }
    t.templates_[name] = std::move(tmpl);
  }
  if (ec) return Error::validation("cannot read notify.templates_dir " + dir + ": " + ec.message());
  return t;
}

Result<Rendered> Templates::render(const std::string& name, const TemplateVars& vars) const {
  auto it = templates_.find(name);
  if (it == templates_.end()) return Error::not_found("no mail template named '" + name + "'");
  const Template& t = it->second;
  Rendered r;
  HARMAR_TRY(r.subject, render_one(t.subject, vars, false));
  HARMAR_TRY(r.text, render_one(t.text, vars, false));
  HARMAR_TRY(r.html, render_one(t.html, vars, true));
  // A subject is one line whatever a variable held.
  for (char& c : r.subject)
    if (c == '\r' || c == '\n') c = ' ';
  for (const auto& s : t.secrets) r.sensitive = r.sensitive || vars.count(s) != 0;
  if (r.sensitive) {
    TemplateVars redacted = vars;
    for (const auto& s : t.secrets)
      if (auto v = redacted.find(s); v != redacted.end()) v->second = "[redacted]";
    HARMAR_TRY(r.redacted_text, render_one(t.text, redacted, false));
  }
  return r;
}

}  // namespace harmar::notify
