"""dedup: find duplicate records with a field-wise Siamese encoder.

Stages, in pipeline order, one module each: ``config`` -> ``io`` (read) -> ``blocking`` ->
``encoder`` / ``training`` -> ``scoring`` -> ``clustering`` -> ``io`` (write), with
``evaluation`` for metrics and ``pipeline`` running them all.
"""

__version__ = "0.1.0"
