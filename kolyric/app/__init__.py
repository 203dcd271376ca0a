"""The Textual app: a lyrics playground, a training screen and a model picker.

Importing this package imports nothing: ``kolyric.app.app`` pulls in Textual, and the
engine (torch, transformers) is imported only inside workers, after the first paint.
"""
