"""The local development stack (`python -m devstack.stack up`), its app supervisor, and the demo client.

They may import every runtime package; no runtime package imports them.
"""
