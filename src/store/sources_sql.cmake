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
