#pragma once
// TLS server context: TLS 1.2+, certificate chain and key from PEM files, ALPN choosing h2 when
// the client offers it and http/1.1 otherwise.
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

#include "core/result.hpp"

namespace harmar::net {

Result<std::unique_ptr<boost::asio::ssl::context>> make_server_tls(const std::string& cert_file,
                                                                   const std::string& key_file);

}  // namespace harmar::net
