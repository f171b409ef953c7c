"""Statistics over annotation rankings (pure numpy, no Django)."""
