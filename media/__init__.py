"""Images and stored files, shared by every app (no models: see media/storage.py)."""
