"""`attnzoo profile` (registered on the app when implemented)."""
