"""What to merge: adopt what agents wrote, find candidate pairs per tenant, cluster them,
plan each merge (centroid, label) and run it all as one consolidation run. The merges are
written by the ledger."""
