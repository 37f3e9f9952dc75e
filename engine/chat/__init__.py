"""Chat templates: masks derived from messages, structure recovered from tokens."""
