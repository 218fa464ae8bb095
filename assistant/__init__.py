"""search-assistant: a small local model that searches, reads and answers with citations.

Run `assistant ask "Who painted The Night Watch?"` after `pip install -e .`; see README.md.
"""

__version__ = "0.1.0"
