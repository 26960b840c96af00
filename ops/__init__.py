"""Operator tools: replaying histories against the current workflow code (`python -m ops.replay`).

They may import every runtime package; no runtime package imports them.
"""
