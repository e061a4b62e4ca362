// Stopping a civetweb server in milliseconds instead of seconds.
//
// civetweb's master thread sees its stop flag only when its poll of the listening sockets
// returns, and it polls with a 2 s timeout: mg_stop (and so destroying a prometheus Exposer)
// alone takes up to 2 s. A connection to the listener ends the poll at once.
#pragma once

#include <functional>
#include <string>

namespace kiln {

// Runs `stop` (mg_stop, or destroying what owns the server) while opening and closing a
// connection to the listener every 20 ms until it returns. `listen` is the server's host:port
// ([v6]:port); the wildcard hosts are reached on loopback. Best effort: a host that is not a
// literal address gets no wake-ups (the stop then takes civetweb's own time).
void StopWakingListener(const std::function<void()>& stop, const std::string& listen, int port);

}  // namespace kiln
