"""Strength over time: accesses recorded, retention computed from them, ranking that uses
it, and the policy of which faded memories to forget (the ledger puts them to sleep)."""
