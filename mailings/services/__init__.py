"""The mailings services (see each module): lifecycle (create, update, launch, pause, resume,
cancel, the schedule tick), planning (the run's ledger, audience preview), policies (frequency
caps), dispatch (batches, claims, the sweeper), triggers, feedback (bounces, complaints,
tracking), stats (counters)."""
