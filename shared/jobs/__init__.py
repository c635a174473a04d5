"""The job state machine, its statuses and the public job view, shared by every process."""
