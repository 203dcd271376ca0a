"""Widgets of the app, one screen area per module; each carries its own DEFAULT_CSS."""
