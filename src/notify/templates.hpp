#pragma once
// Mail templates: mustache (kainjow) text, HTML and subject per template name. Built-in
// templates are compiled in; a directory (`notify.templates_dir`) may override them or add new
// ones as NAME.subject, NAME.txt and NAME.html files (NAME.html is optional).
#include <map>
#include <set>
#include <string>

#include "core/result.hpp"
#include "notify/mailer.hpp"

namespace harmar::notify {

struct Template {
  std::string subject, text, html;
  std::set<std::string> secrets;  // variables the outbox must never see
};

struct Rendered {
  std::string subject, text, html;
  std::string redacted_text;  // text with every secret variable replaced by "[redacted]"
  bool sensitive = false;
};

class Templates {
 public:
  // The built-in templates, overridden by files in `dir` (if not empty). Reads files: call at
  // startup. A template that does not parse is a 422 naming the file.
  static Result<Templates> load(const std::string& dir);
  static Templates builtin();

  bool has(const std::string& name) const { return templates_.count(name) != 0; }
  // 404 for an unknown name; 500 if rendering fails.
  Result<Rendered> render(const std::string& name, const TemplateVars& vars) const;

 private:
  std::map<std::string, Template> templates_;
};

}  // namespace harmar::notify
