# Controller benchmarks (included from tests/bench/CMakeLists.txt): figures printed, never asserted.
add_executable(allocator_bench ${CMAKE_CURRENT_LIST_DIR}/allocator_bench.cc)
target_link_libraries(allocator_bench PRIVATE regen_controller_core benchmark::benchmark)
# Smoke-run once in ctest so a broken benchmark fails the suite (builds the 10,000-host cluster).
add_test(NAME allocator_bench_smoke COMMAND allocator_bench --benchmark_min_time=0.01)
set_tests_properties(allocator_bench_smoke PROPERTIES LABELS bench TIMEOUT 300)
