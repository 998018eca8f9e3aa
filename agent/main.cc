#include "agent/cli.h"

int main(int argc, char** argv) { return regen::AgentMain(argc, argv); }
