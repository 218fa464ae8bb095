"""search-assistant: a small local model that searches, reads and answers with citations.

Run `assistant ask "Who painted The Night Watch?"` after `make install`; see README.md.
"""

import os

# Set before torch or llama_cpp loads OpenMP: threads that spin-wait slow llama.cpp 8-20x when another busy
# process (or torch in this one) shares the CPU. A user's explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
