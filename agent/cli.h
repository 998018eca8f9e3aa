// regen-agent's command line: `run` (the daemon) and the host-local subcommands that talk to a
// running agent over its control socket. Called from main() only.
#pragma once

namespace regen {

int AgentMain(int argc, char** argv);

}  // namespace regen
