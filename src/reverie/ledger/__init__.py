"""Recorded changes to the store: merging, releasing, undoing, forgetting, reviving and
dropping old originals. Each is crash-safe by one protocol (intent, copy, mark, delete),
written in one run log, undone by one code path and checked by one set of invariants.
Consolidation and lifecycle decide what to change; this package changes it."""
