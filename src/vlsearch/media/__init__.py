"""Media loading: bytes, paths and URLs to validated pixels. Each format has its own module."""
