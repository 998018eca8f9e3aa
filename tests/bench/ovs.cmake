# OVS benchmarks (included from tests/bench/CMakeLists.txt): a real ovs-vswitchd in an OvsSandbox
# (root, network namespaces); figures printed, never asserted.
add_executable(ovs_bench ${CMAKE_CURRENT_LIST_DIR}/ovs_bench.cc)
target_link_libraries(ovs_bench PRIVATE regen_ovs_sandbox benchmark::benchmark)
# Smoke-run once in ctest so a broken benchmark fails the suite.
add_test(NAME ovs_bench_smoke COMMAND ovs_bench --benchmark_min_time=0.01)
set_tests_properties(ovs_bench_smoke PROPERTIES LABELS bench TIMEOUT 300)
