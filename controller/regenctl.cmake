# regen_ctl_lib: regenctl's command line over AdminClient; regenctl: its one-line main.
add_library(regen_ctl_lib STATIC ${CMAKE_CURRENT_LIST_DIR}/regenctl.cc)
target_link_libraries(regen_ctl_lib PUBLIC regen_admin_client regen_config regen_common
  CLI11::CLI11 nlohmann_json::nlohmann_json)

add_executable(regenctl ${CMAKE_CURRENT_LIST_DIR}/regenctl_main.cc)
target_link_libraries(regenctl PRIVATE regen_ctl_lib)
