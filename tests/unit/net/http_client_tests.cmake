# The outbound HTTP client (src/net/http_client.*) against the in-process test server.
harmar_unit_test(test_net_client
  SOURCES http_client_test.cpp
  DEPS harmar_net harmar_test_http)
