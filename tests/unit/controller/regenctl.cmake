# regenctl_test: regenctl's commands against an in-process fake AdminService.
regen_add_test(NAME regenctl_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/regenctl_test.cc
  LIBS regen_ctl_lib LABELS unit)
