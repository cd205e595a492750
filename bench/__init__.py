"""rohrpost's benchmark: server CPU per ping round trip against plain Channels.

``python -m bench`` (or ``make bench``) runs it; ``bench/README.md`` explains
the method and how to read the results.
"""
