# Proves clang's thread-safety analysis is on in this build: with the build's own compiler and
# compile options, guarded_ok.cc (a GUARDED_BY member read under its lock) must compile and
# guarded_bad.cc (the same read without the lock) must fail with the analysis' error.
# cmake -DCXX=<compiler> -DFLAGS=<;-list> -DSOURCE_DIR=<repo root> -DHERE=<this dir> -P check.cmake
foreach(file guarded_ok guarded_bad)
  execute_process(
    COMMAND ${CXX} ${FLAGS} -std=c++20 -fsyntax-only -I${SOURCE_DIR} ${HERE}/${file}.cc
    RESULT_VARIABLE rc_${file} OUTPUT_VARIABLE out_${file} ERROR_VARIABLE out_${file})
endforeach()
if(NOT rc_guarded_ok EQUAL 0)
  message(FATAL_ERROR "guarded_ok.cc should compile but did not (so guarded_bad.cc proves "
                      "nothing):\n${out_guarded_ok}")
endif()
if(rc_guarded_bad EQUAL 0)
  message(FATAL_ERROR "guarded_bad.cc compiled: the thread-safety analysis is OFF "
                      "(flags: ${FLAGS})")
endif()
if(NOT out_guarded_bad MATCHES "requires holding mutex 'mu_'.*-Wthread-safety")
  message(FATAL_ERROR "guarded_bad.cc failed, but not with the thread-safety error:\n"
                      "${out_guarded_bad}")
endif()
message(STATUS "thread-safety analysis is on: reading a GUARDED_BY member unlocked is an error")
