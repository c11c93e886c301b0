"""Where things land. Targets are the only code that talks to a server."""
