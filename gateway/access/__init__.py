"""The access-binding routes, and which binding news of a folder's event stream a caller may
see."""
