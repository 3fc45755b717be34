"""`attnzoo train` (registered on the app when implemented)."""
