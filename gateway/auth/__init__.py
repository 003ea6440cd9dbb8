"""Who the caller is: bearer tokens, signed with the secret or by a JWKS key (what it may do
is api/authorization.py)."""
