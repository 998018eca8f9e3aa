# Fleet benchmark (included from tests/bench/CMakeLists.txt): a real regen-controller process and
# thousands of simulated agents over gRPC on loopback; figures printed, never asserted.
add_executable(fleet_bench ${CMAKE_CURRENT_LIST_DIR}/fleet_bench.cc
                           ${CMAKE_CURRENT_LIST_DIR}/fleet_agents.cc)
target_link_libraries(fleet_bench PRIVATE regen_proto regen_test_support)
add_dependencies(fleet_bench regen-controller)
# Smoke-run (50 hosts, 200 instances) in ctest so a broken benchmark fails the suite; it fails
# when a phase does not finish, or a controller restart fences or heals anything.
add_test(NAME fleet_bench_smoke
         COMMAND fleet_bench --controller $<TARGET_FILE:regen-controller> --hosts 50
                 --instances 200 --service-size 10 --heals 5 --rack 20 --steady-seconds 2)
set_tests_properties(fleet_bench_smoke PROPERTIES LABELS bench TIMEOUT 300)
