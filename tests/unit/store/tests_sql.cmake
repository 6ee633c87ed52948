# The SQL half of the store: one binary. Backend tests run against SQLite and PostgreSQL
# (HARMAR_TEST_PG_URL, from scripts/test-services.sh).
harmar_unit_test(test_store_sql
  SOURCES
    async_semaphore_test.cpp
    sql_rows_test.cpp
    sql_backend_test.cpp
    sql_migrate_test.cpp
    sql_sqlite_test.cpp
    sql_postgres_test.cpp
    sql_notify_test.cpp
  DEPS harmar_store)
# g++ 12 reports asio's coroutine frame allocator as a mismatched new/delete (a false positive).
target_compile_options(test_store_sql PRIVATE -Wno-mismatched-new-delete)
