// How regenctl reaches the controller: the global flags (--controller, --timeout, TLS files,
// bearer token) with their environment defaults, checked and turned into AdminClientOptions.
// Called on regenctl's one thread.
#pragma once

#include <CLI/CLI.hpp>
#include <ostream>

#include "common/admin_client.h"
#include "common/status.h"
#include "ctl/command.h"

namespace regen::ctl {

// Args with the defaults the environment gives: REGEN_CONTROLLER, REGEN_CA, REGEN_CERT, REGEN_KEY,
// REGEN_TOKEN_FILE.
Args ArgsFromEnvironment();

// The global options on the root command: --controller, --timeout, --ca, --cert, --key,
// --token-file, --tls-server-name.
void AddConnectionOptions(CLI::App& app, Args& a);

// Checks the credential flags and fills `options` (TLS files, token). Nothing is sent on error.
Status CredentialOptions(const Args& a, AdminClientOptions* options, std::ostream& err);

// Sets the reply deadline (--timeout) and the hint added when the controller cannot be reached.
void SetDeadlineAndHint(const Args& a, AdminClientOptions* options);

}  // namespace regen::ctl
