"""Running the service: request logs and figures, rollups, audit log, retention, key rotation."""
