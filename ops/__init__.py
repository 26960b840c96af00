"""Operator tools: replay histories (`ops.replay`), create users (`ops.users`), run the retention sweep (`ops.retention`).

They may import every runtime package; no runtime package imports them.
"""
