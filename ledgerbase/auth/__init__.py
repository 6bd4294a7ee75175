"""Authentication: API keys and JWT verification."""
