"""reverie: a self-evolving memory daemon for AI agents.

Agents write concept embeddings into Qdrant; reverie merges near-duplicates into
weighted centroids, archives the originals with lineage, and can undo any merge.
"""

__version__ = "0.1.0"
