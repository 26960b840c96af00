"""Embedded CPU media runtime: speech, scenes, faces, animation, captions and encoding without model weights."""
