#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace harmar {

// A UUIDv7 (RFC 9562) as its 36-character string: time-ordered, so ids sort by creation.
// Ids made by one thread are strictly increasing, even within one millisecond.
std::string new_id();
bool is_uuid(std::string_view s);

// `n` bytes from the OS CSPRNG (libsodium), as lowercase hex or unpadded base64url.
std::string random_hex(std::size_t n);
std::string random_token(std::size_t n);

// A cheap, unique-per-process request id; not secret, not guessable-resistant.
std::string next_request_id();

}  // namespace harmar
