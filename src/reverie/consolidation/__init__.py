"""Consolidation: adopt, pair, cluster, plan, apply crash-safely, record, undo."""
