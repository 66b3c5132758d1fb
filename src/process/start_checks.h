// What reading the configuration cannot see but would stop a start: the user the workers switch to,
// log and pid files that cannot be opened or created, listen addresses that cannot be bound. `-t`
// runs every check, so that a configuration that passes it also starts; the user is checked with
// the configuration itself (load_cycle), so that a start or a reload refuses it at once instead of
// forking workers that cannot switch to it.
#pragma once

#include <string>
#include <vector>

namespace baton {

struct ConfFile;
struct Cycle;
struct MainConf;

// Throws ConfError "file:line: unknown user ..." when `user` names no user. A `user` given in the
// configuration is checked whoever runs baton; the default (nobody) only when running as root, the
// only case in which workers switch to it.
void check_user(const ConfFile& conf, const ConfFile* overrides, const MainConf& main);

// The checks of `-t` that touch the system: log and pid files (opened without writing, created
// nowhere), listen addresses (bound without listening; an address the running master of this
// configuration already holds is fine). Returns one message per problem, "file:line: ..." where the
// configuration names the culprit; empty when the start would get past them.
std::vector<std::string> check_start(const Cycle& cycle);

}  // namespace baton
