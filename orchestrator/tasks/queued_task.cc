#include "orchestrator/tasks/queued_task.h"

namespace kiln::orchestrator {

std::string QueuedTask::Key() const { return keys::Task(kind, ns, queue, task_id); }

}  // namespace kiln::orchestrator
