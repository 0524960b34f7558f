"""Decoding of photos and videos into RGB frames, and the frame encoding used on the bus."""
