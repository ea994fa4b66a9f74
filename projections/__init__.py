"""Read models that follow the event log (status, review queue, archive, audit log)."""
