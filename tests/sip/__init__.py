"""Tests of the sans-IO SIP stack, and the RFC 4475 torture messages other tests read too."""

from pathlib import Path

# The RFC's own test messages, byte for byte, with their provenance and expected outcomes in the
# README.md beside them: kept in the repository so a clone alone runs every test.
TORTURE_DIR = Path(__file__).resolve().parent / "torture"
