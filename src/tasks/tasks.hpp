#pragma once
// The tasks module: a durable queue of work for devices (shared/API.md "Tasks"). See service.hpp
// for the guarantees and the claim/lease algorithm.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <string>

#include "core/principal.hpp"
#include "core/result.hpp"
#include "platform/module.hpp"

namespace harmar::tasks {

platform::Module module();

// What other modules use to queue work for a device (provided by this module, found with
// Services::find<tasks::Submitter>()). The task is the user's, as if they had created it through
// POST /v1/tasks: it shows in their task list, events and notifications.
class Submitter {
 public:
  struct Submitted {
    std::string id;
    std::string status;  // "queued" (or "delayed" for a future run)
  };
  virtual ~Submitter() = default;
  // Queues a task of `type` with `payload` for the user's device `device_id` (422 if it is not
  // one of theirs, or the payload is too large).
  virtual boost::asio::awaitable<Result<Submitted>> submit(const Principal& user, std::string type,
                                                           boost::json::object payload, std::string device_id) = 0;
};

}  // namespace harmar::tasks
