"""Importing a create's bytes: its source resolved and fetched within its limits, the bytes hashed,
inspected as qemu would see them, and stored."""
