"""The access-binding methods, the rules a binding follows, and which binding news a caller may
see."""
