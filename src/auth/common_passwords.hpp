#pragma once
// The 1 000 most common passwords (SecLists, Passwords/Common-Credentials/
// 10-million-password-list-top-1000.txt, MIT licence), one per line: common_passwords.txt,
// compiled into the binary by CMake (common_passwords.cpp.in).
namespace harmar::auth {
extern const char kCommonPasswords[];
}
