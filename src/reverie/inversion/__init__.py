"""Vectors back into text: embedders, the built-in guided inverter (a small LM steered by
the vector), vec2text correctors, blends, training, and the lazily cached text of merged
memories."""
