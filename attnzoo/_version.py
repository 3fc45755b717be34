"""attnzoo's version: a leaf module, so that every layer can stamp rows and unit ids without importing the
package's public API (pyproject.toml reads it too)."""

__version__ = "0.1.0"
