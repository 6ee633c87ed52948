#pragma once
// Idempotency-Key for POSTs that create something (shared/API.md): the same key and body return
// the first response again (with `Idempotent-Replayed: true`); the same key with another body is
// 409 `idempotency_key_reused`; a retry while the first is still running is 409
// `idempotency_in_progress`. Keys are scoped to the caller (principal, or client IP when
// anonymous) and kept for 24 hours. 5xx answers are not kept, so a retry runs again.
#include "net/router.hpp"
#include "platform/module.hpp"

namespace harmar::platform {

net::Middleware idempotent(Services& services);

// The "platform" module: the idempotency table and its retention sweeper.
Module platform_module();

}  // namespace harmar::platform
