"""Domain operations, one module per domain; each function takes a Session first.

Functions flush but leave the commit to the caller, unless their docstring says
the step is atomic on its own.
"""
