"""What every process shares: settings, Temporal client, database, object storage."""
