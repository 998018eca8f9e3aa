#include "ctl/regenctl.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "common/admin_client.h"
#include "common/controller_list.h"
#include "common/names.h"
#include "ctl/command.h"
#include "ctl/connection.h"

namespace regen {

namespace {

using ctl::Args;
using ctl::Command;

std::vector<CLI::App*> Subcommands(CLI::App* app) {
  return app->get_subcommands([](const CLI::App*) { return true; });
}

const CLI::Option* FindOption(CLI::App* level, const std::string& name) {
  for (CLI::App* a = level; a != nullptr; a = a->get_parent()) {
    if (const CLI::Option* opt = a->get_option_no_throw(name)) return opt;
  }
  return nullptr;
}

struct CommandWalk {
  std::string path;     // the deepest command named, "service apply"
  std::string unknown;  // an error message when a word is not a command at its level
  std::string missing;  // an error message when the words stop before a leaf command
};

std::string CommandNames(CLI::App* level) {
  std::string names;
  for (const CLI::App* s : Subcommands(level)) names += (names.empty() ? "" : ", ") + s->get_name();
  return names;
}

std::string HelpHint(const std::string& path) {
  return "see regenctl " + (path.empty() ? "" : path + " ") + "--help";
}

// Walks argv as CLI11 will, to name an unknown command clearly (CLI11 would only say that an
// argument was not expected) and to know which command a parse error is about.
CommandWalk WalkCommands(CLI::App& app, int argc, char** argv) {
  CommandWalk walk;
  CLI::App* level = &app;
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (word == "--") break;
    if (word.size() > 1 && word[0] == '-') {
      if (word.find('=') != std::string::npos) continue;
      if (word[1] != '-' && word.size() > 2) continue;  // "-ojson"
      const CLI::Option* opt = FindOption(level, word);
      if (opt != nullptr && opt->get_items_expected_max() > 0) ++i;  // skip its value
      continue;
    }
    std::vector<CLI::App*> subs = Subcommands(level);
    if (subs.empty()) break;  // a leaf: the rest are its arguments
    auto it = std::find_if(subs.begin(), subs.end(),
                           [&](const CLI::App* s) { return s->get_name() == word; });
    if (it == subs.end()) {
      walk.unknown = (walk.path.empty() ? "" : walk.path + ": ") + "unknown command " +
                     QuoteValue(word) + " (commands: " + CommandNames(level) + "; " +
                     HelpHint(walk.path) + ")";
      return walk;
    }
    level = *it;
    walk.path += (walk.path.empty() ? "" : " ") + word;
  }
  if (!Subcommands(level).empty()) {
    walk.missing = (walk.path.empty() ? "" : walk.path + ": ") +
                   "which command? (commands: " + CommandNames(level) + "; " + HelpHint(walk.path) +
                   ")";
  }
  return walk;
}

// Parses argv into the flags; returns the exit code when regenctl is done (--help, or a bad command
// line: 2), nothing when the parsed command is to run.
std::optional<int> Parse(CLI::App& app, int argc, char** argv, const Args& a, std::ostream& out,
                         std::ostream& err) {
  CommandWalk walk = WalkCommands(app, argc, argv);
  if (!walk.unknown.empty()) {
    err << "regenctl: " << walk.unknown << "\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e, out, err);  // --help
    if (!walk.missing.empty()) {
      err << "regenctl: " << walk.missing << "\n";
    } else {
      err << "regenctl: " << (walk.path.empty() ? "" : walk.path + ": ") << e.what() << " ("
          << HelpHint(walk.path) << ")\n";
    }
    return 2;
  }
  if (a.output != "text" && a.output != "json") {
    err << "regenctl: -o/--output " << QuoteValue(a.output)
        << " is not an output format (use text or json)\n";
    return 2;
  }
  if (!(a.timeout_seconds > 0) || !std::isfinite(a.timeout_seconds)) {
    err << "regenctl: --timeout " << a.timeout_seconds << " must be a positive number of seconds\n";
    return 2;
  }
  if (a.controller.empty()) {
    err << "regenctl: --controller is empty (give host:port, e.g. " << ctl::kDefaultController
        << ")\n";
    return 2;
  }
  if (Result<std::vector<std::string>> list = ParseControllerList(a.controller); !list.ok()) {
    err << "regenctl: --controller (or REGEN_CONTROLLER) " << QuoteValue(a.controller) << ": "
        << list.status().message() << "\n";
    return 2;
  }
  return std::nullopt;
}

// Runs the one command the command line named: its checks, then its RPCs.
int Run(std::vector<Command>& commands, const Args& a, std::ostream& out, std::ostream& err) {
  AdminClientOptions options;
  if (Status s = ctl::CredentialOptions(a, &options, err); !s.ok()) {
    err << "regenctl: " << s.message() << "\n";
    return 2;
  }
  for (Command& c : commands) {
    if (!c.app->parsed()) continue;
    if (Status s = c.check(); !s.ok()) {
      err << "regenctl: " << c.path << ": " << s.message() << "\n";
      return 2;
    }
    ctl::SetDeadlineAndHint(a, &options);
    AdminClient client(a.controller, options);
    if (Status s = c.run(client); !s.ok()) {
      out.flush();
      err << "regenctl: " << s.message() << "\n";
      return 1;
    }
    return 0;
  }
  err << "regenctl: no command given (see regenctl --help)\n";
  return 2;
}

}  // namespace

int RegenctlMain(int argc, char** argv, std::ostream& out, std::ostream& err) {
  Args a = ctl::ArgsFromEnvironment();
  CLI::App app{
      "regenctl: the Regen cluster CLI (services, instances, hosts, failover, events, upgrades)",
      "regenctl"};
  app.fallthrough();  // global options are accepted after the command too
  app.require_subcommand(1);
  ctl::AddConnectionOptions(app, a);
  ctl::AddOutputOption(&app, a);

  std::vector<Command> commands;
  ctl::CommandSet set{app, a, out, commands};
  ctl::AddServiceCommands(set);
  ctl::AddInstanceCommands(set);
  ctl::AddHostCommands(set);
  ctl::AddEventsCommand(set);
  ctl::AddUpgradeCommands(set);
  ctl::AddMaintenanceCommands(set);
  for (Command& c : commands) ctl::AddOutputOption(c.app, a);

  if (std::optional<int> done = Parse(app, argc, argv, a, out, err)) return *done;
  return Run(commands, a, out, err);
}

}  // namespace regen
