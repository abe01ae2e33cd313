"""Memory that lives: use remembered, strength and fading, ranking that can use them."""
