// The command line of `regen-controller etcd ...` (controller/etcd_setup.h).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "controller/etcd_setup.h"

namespace regen {
namespace {

constexpr char kEtcdHelp[] =
    "set etcd up for the HA mode (store: etcd): users, roles, auth. Every command authenticates "
    "as etcd's root with --root-password-file and may be run again (it says what existed).";

void Print(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// Prints what failed; returns `exit_code` (2: bad usage, refused before anything was sent).
int Fail(const std::string& command, const Status& s, int exit_code) {
  std::fprintf(stderr, "regen-controller etcd %s: %s\n", command.c_str(), s.message().c_str());
  return exit_code;
}

}  // namespace

EtcdSetupCommand::EtcdSetupCommand(CLI::App& app, std::string* config_path)
    : config_path_(config_path) {
  etcd_ = app.add_subcommand("etcd", kEtcdHelp);
  etcd_->require_subcommand(1);
  etcd_->add_option("--config,-c", *config_path_, "controller.yaml (its etcd block)");
  auto root_option = [this](CLI::App* sub) {
    sub->add_option("--root-password-file", root_password_file_,
                    "file holding the password of etcd's user root")
        ->required();
  };
  init_ = etcd_->add_subcommand(
      "init",
      "create user root (password from --root-password-file) with role root, role "
      "regen-controller (read/write on etcd.prefix) for the controllers' user (etcd.user, or "
      "the CN of etcd.tls.cert), then enable auth");
  root_option(init_);
  add_host_ = etcd_->add_subcommand(
      "add-host",
      "create user HOST (an agent's host_name, the CN of its certificate) and role "
      "regen-host-HOST with read/write on <prefix>hosts/HOST/ only");
  add_host_->add_option("HOST", host_, "the agent host's name")->required();
  add_host_->add_option("--password-file", password_file_,
                        "the host's etcd password (default: none, client certificate only)");
  root_option(add_host_);
  remove_host_ = etcd_->add_subcommand("remove-host", "delete user HOST and role regen-host-HOST");
  remove_host_->add_option("HOST", host_, "the agent host's name")->required();
  root_option(remove_host_);
}

bool EtcdSetupCommand::parsed() const { return etcd_->parsed(); }

int EtcdSetupCommand::Run() const {
  const std::string command = init_->parsed()       ? "init"
                              : add_host_->parsed() ? "add-host"
                                                    : "remove-host";
  auto config = LoadControllerConfig(*config_path_);
  if (!config.ok()) return Fail(command, config.status(), 2);
  if (config->store != "etcd") {
    return Fail(command,
                InvalidArgument(*config_path_ + " has store: " + config->store +
                                "; the etcd commands need store: etcd and its etcd block"),
                2);
  }
  Status usage = init_->parsed() ? ControllerEtcdUser(config->etcd).status()
                                 : ValidateEtcdHostName(config->etcd, host_);
  if (!usage.ok()) return Fail(command, usage, 2);
  auto root_password = ReadPasswordFile(root_password_file_, "--root-password-file");
  if (!root_password.ok()) return Fail(command, root_password.status(), 1);
  Status done;
  if (init_->parsed()) {
    done = EtcdInit(config->etcd, *root_password, Print);
  } else if (add_host_->parsed()) {
    std::optional<std::string> password;
    if (!password_file_.empty()) {
      auto read = ReadPasswordFile(password_file_, "--password-file");
      if (!read.ok()) return Fail(command, read.status(), 1);
      password = *read;
    }
    done = EtcdAddHost(config->etcd, *root_password, host_, password, Print);
  } else {
    done = EtcdRemoveHost(config->etcd, *root_password, host_, Print);
  }
  if (!done.ok()) return Fail(command, done, 1);
  Print("etcd " + command + ": done");
  return 0;
}

}  // namespace regen
