"""The stand-in API's key and port, shared by the server and the command line (which must not load the server)."""

STAND_IN_KEY = "sk-stand-in"
STAND_IN_PORT = 8788
