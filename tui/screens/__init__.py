"""The Textual app, its screens and messages, and backend.py: their one seam to the engine."""
