# The SQL half of the store (see sql.hpp): the interface, both backends, migrations.
set(HARMAR_STORE_SQL_SOURCES
  sql.cpp
  sqlite.cpp
  postgres.cpp
  migrate.cpp
  notify.cpp
  detail/async_semaphore.cpp)
# g++ 12 reports asio's coroutine frame allocator as a mismatched new/delete (a false positive).
set_source_files_properties(sql.cpp sqlite.cpp postgres.cpp migrate.cpp notify.cpp detail/async_semaphore.cpp
  PROPERTIES COMPILE_OPTIONS -Wno-mismatched-new-delete)
# MariaDB/MySQL (libmariadb-dev): the third backend, built when the library is there.
pkg_check_modules(MARIADB IMPORTED_TARGET libmariadb)
if(MARIADB_FOUND)
  list(APPEND HARMAR_STORE_SQL_SOURCES mysql.cpp)
  set(HARMAR_STORE_SQL_DEPS PkgConfig::MARIADB)
  set_source_files_properties(mysql.cpp PROPERTIES COMPILE_OPTIONS -Wno-mismatched-new-delete)
  set_source_files_properties(sql.cpp PROPERTIES COMPILE_DEFINITIONS HARMAR_STORE_HAS_MYSQL)
endif()
