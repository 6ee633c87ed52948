#pragma once
// The config backups module (shared/API.md "Config backups", docs/backups.md): devices upload
// their configuration files, their users list, download, restore and delete them. Files are
// streamed to blob storage (filesystem or S3, whatever BlobStore is configured), never held whole.
#include "platform/module.hpp"

namespace harmar::backups {

platform::Module module();

}  // namespace harmar::backups
