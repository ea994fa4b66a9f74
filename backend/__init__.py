"""birthcert's HTTP backend: configuration, the aiohttp app and the command line."""

__version__ = "0.1.0"
