// `kiln-orchestrator token`: mints a token for an operator (or a script) with the key file the
// orchestrator verifies tokens with, and prints it on stdout. It reads the same --data-dir and
// --auth-key-file as the server (or --key-file); a missing key file is created, as the server
// would on its first start. The token's id and expiry go to stderr: `kiln token revoke ID` (an
// admin's call to the running orchestrator) refuses the token from then on.
//
//   kiln-orchestrator token --scope admin|worker|agent|read-only [--project P] [--queues a,b*]
//                           [--ttl 1h]
//                           [--subject S] [--key-file F]
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "orchestrator/server/server.h"

namespace kiln::orchestrator {

class TokenCommand {
 public:
  // Adds the `token` subcommand to `app`.
  explicit TokenCommand(CLI::App& app);

  bool parsed() const { return command_->parsed(); }
  // Mints and prints the token; returns the exit code (0, 1 on a key file error, 2 on a bad
  // flag), errors on `err`.
  int Run(const ServerOptions& server, std::ostream& out, std::ostream& err) const;

 private:
  CLI::App* command_;
  std::string scope_;
  std::string project_;
  std::vector<std::string> queues_;
  std::string ttl_ = "1h";
  std::string subject_ = "operator";
  std::string key_file_;
};

}  // namespace kiln::orchestrator
