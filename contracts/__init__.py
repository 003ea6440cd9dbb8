"""Kiln's wire types: msgspec Structs that emit and parse the Image API's proto3 JSON."""
