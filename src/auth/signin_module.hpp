#pragma once
// The other ways to sign in, as one module listed after auth in src/server/modules.cpp:
// image captchas (provides auth::CaptchaVerifier), SMS codes and third-party login (GitHub,
// WeChat, OpenID Connect). Accounts and sessions come from auth::Accounts (auth/service.hpp).
//
//   GET  /v1/auth/captcha                        → {captcha_id, image, expires_in}
//   POST /v1/auth/sms/send   {phone}             → 202 {phone, expires_in, resend_after}
//   POST /v1/auth/sms/login  {phone, code}       → 200 token pair
//   GET  /v1/auth/oauth/{provider}/authorize     → 302 to the provider
//   GET  /v1/auth/oauth/{provider}/callback      → 200 token pair, or 302 to the app URL
#include "platform/module.hpp"

namespace harmar::auth {

platform::Module signin_module();

}  // namespace harmar::auth
