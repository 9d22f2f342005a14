"""The operator console: a web front end that acts only through signed control commands."""
