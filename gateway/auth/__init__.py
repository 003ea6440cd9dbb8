"""Who the caller is (bearer tokens, JWKS) and what it may do (roles, permissions)."""
