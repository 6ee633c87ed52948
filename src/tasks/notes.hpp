#pragma once
// What other modules may do to tasks (provided by the tasks module, found with
// `services.find<tasks::TaskNotes>()`): the email module turns a reply to a task mail into a note
// and a mail to a device into a new task. The caller has already decided who may do this (a
// signed reply token), so these take no Principal: the task's or device's owner is the actor.
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <string>

#include "core/result.hpp"

namespace harmar::tasks {

class TaskNotes {
 public:
  virtual ~TaskNotes() = default;
  // Appends "[note from AUTHOR] TEXT" to the task's log (GET /v1/tasks/{id}/logs; kept within
  // tasks.max_log_bytes like any log) and publishes task.updated with change "note". Answers the
  // task's user id; 404 when there is no such task.
  virtual boost::asio::awaitable<Result<std::string>> add_note(std::string task_id, std::string author,
                                                               std::string text) = 0;
  // Queues a new task of `type` for `device_id`, owned by the device's user; answers its id.
  // 404 when there is no such device.
  virtual boost::asio::awaitable<Result<std::string>> create_for_device(std::string device_id, std::string type,
                                                                        boost::json::value payload) = 0;
};

}  // namespace harmar::tasks
