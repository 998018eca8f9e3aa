# DNS benchmarks (included from tests/bench/CMakeLists.txt): a real knotd on loopback; figures
# printed, never asserted.
add_executable(dns_bench ${CMAKE_CURRENT_LIST_DIR}/dns_bench.cc)
target_link_libraries(dns_bench PRIVATE regen_knot_harness regen_dns benchmark::benchmark)
# Smoke-run once in ctest so a broken benchmark (or a knotd that cannot start) fails the suite.
add_test(NAME dns_bench_smoke COMMAND dns_bench --benchmark_min_time=0.01)
set_tests_properties(dns_bench_smoke PROPERTIES LABELS bench TIMEOUT 120)
