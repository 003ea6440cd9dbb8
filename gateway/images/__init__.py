"""The Image methods: routes, the list query language, and the writes (creates and updates in
group-committed batches, deletes)."""
