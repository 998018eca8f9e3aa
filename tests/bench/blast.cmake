# Topology blast benchmark (included from tests/bench/CMakeLists.txt): a real controller and N
# simulated agents over gRPC on loopback; figures printed, never asserted.
add_executable(blast_bench ${CMAKE_CURRENT_LIST_DIR}/blast_bench.cc)
target_link_libraries(blast_bench PRIVATE regen_controller_lib regen_ovs regen_test_support)
# Smoke-run (20 agents, 2 rounds) in ctest so a broken benchmark fails the suite.
add_test(NAME blast_bench_smoke COMMAND blast_bench --agents 20 --rounds 2)
set_tests_properties(blast_bench_smoke PROPERTIES LABELS bench TIMEOUT 120)
