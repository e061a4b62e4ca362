// Termination signals for servers: block SIGTERM/SIGINT in every thread (call before starting
// any), then wait for one on the main thread and shut down gracefully.
#pragma once

namespace kiln {

void BlockTerminationSignals();
// Returns the signal number received (SIGTERM or SIGINT).
int WaitForTerminationSignal();

}  // namespace kiln
