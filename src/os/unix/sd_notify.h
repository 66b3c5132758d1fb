// systemd's readiness protocol, spoken directly: one datagram to $NOTIFY_SOCKET per state change
// (READY=1, RELOADING=1 with MONOTONIC_USEC, MAINPID=, STOPPING=1, STATUS=). Without the variable it
// does nothing, so baton behaves the same under systemd, in a container and in a terminal.
#pragma once

#include <string>

namespace baton {

// Sends state (lines "KEY=value\n"). Returns false when the variable is set but sending failed.
bool sd_notify(const std::string& state);
// "RELOADING=1\nMONOTONIC_USEC=<now>\n"
std::string sd_reloading_state();

}  // namespace baton
