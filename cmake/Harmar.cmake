# harmar_module(NAME SOURCES ... DEPS ...): one static library per src/ folder.
function(harmar_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
  add_library(harmar_${name} STATIC ${M_SOURCES})
  target_include_directories(harmar_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(harmar_${name} PUBLIC ${M_DEPS})
  target_precompile_headers(harmar_${name} REUSE_FROM harmar_pch)
endfunction()
