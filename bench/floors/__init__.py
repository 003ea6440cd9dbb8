"""Floors: the least each scenario's work can cost on this machine, measured in the same run."""
