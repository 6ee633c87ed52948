#pragma once
// docs/openapi.yaml, embedded by CMake (see src/server/CMakeLists.txt).
namespace harmar::server {
extern const char* const kOpenApiYaml;
}
