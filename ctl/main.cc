#include <iostream>

#include "ctl/regenctl.h"

int main(int argc, char** argv) { return regen::RegenctlMain(argc, argv, std::cout, std::cerr); }
