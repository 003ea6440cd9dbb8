"""The event stream: a folder's events as Server-Sent Events, what wakes it, and what it keeps
checking about its caller."""
