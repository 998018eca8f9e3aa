#include <iostream>

#include "controller/regenctl.h"

int main(int argc, char** argv) { return regen::RegenctlMain(argc, argv, std::cout, std::cerr); }
