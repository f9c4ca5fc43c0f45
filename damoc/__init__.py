"""damoc: choose the open LLM to fine-tune by fine-tuning cheap proxies (DaMoC, arXiv 2509.01221).

Importing damoc is cheap: torch, transformers and textual are imported only inside the functions that need them.
"""
__version__ = "0.1.0"
