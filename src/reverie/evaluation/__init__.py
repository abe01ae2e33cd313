"""Measurements of the library as its users run it: consolidation quality on labelled
paraphrases, and how well inversion reads vectors back. They use `reverie.memory`, so they
sit above it, beside the CLI and the daemon."""
