"""`attnzoo sweep` (registered on the app when implemented)."""
