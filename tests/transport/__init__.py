"""Tests of the asyncio transports, over real sockets on loopback."""
