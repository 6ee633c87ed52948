# Captcha, SMS codes and third-party login (src/auth/{captcha,sms,oauth,signin}*): a library of
# its own on top of the auth module's public interface (auth/service.hpp), included from
# src/auth/CMakeLists.txt. PNG for the captcha image (libpng-dev), mustache for SMS templates.
find_path(KAINJOW_MUSTACHE_INCLUDE_DIR kainjow/mustache.hpp REQUIRED)
find_package(PNG REQUIRED)
harmar_module(auth_signin
  SOURCES captcha.cpp captcha_png.cpp sms.cpp oauth.cpp oauth_idtoken.cpp signin_common.cpp signin_module.cpp
  DEPS harmar_auth harmar_core harmar_net harmar_store harmar_platform PNG::PNG OpenSSL::Crypto PkgConfig::SODIUM)
target_include_directories(harmar_auth_signin PRIVATE ${KAINJOW_MUSTACHE_INCLUDE_DIR})
