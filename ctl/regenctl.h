// regenctl, the operator's CLI for the controller's AdminService: services, instances, hosts,
// failover, drain, events and rolling upgrades. Called from main() (and tests) on one thread; it
// writes only to the streams it is given.
#pragma once

#include <ostream>

namespace regen {

// Runs `regenctl ARGS...` and returns its exit code: 0 done, 1 the controller refused or could not
// be reached, 2 bad command line or input (nothing was sent to the controller).
int RegenctlMain(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace regen
