# Captcha, SMS codes and third-party login (src/auth/signin.cmake); its own test binary, next to
# the auth module's test_auth.
find_package(PNG REQUIRED)
harmar_unit_test(test_auth_signin
  SOURCES signin_captcha_test.cpp signin_sms_test.cpp signin_oauth_test.cpp
  DEPS harmar_auth_signin harmar_test_http PNG::PNG OpenSSL::Crypto)
