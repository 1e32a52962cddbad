"""Fake OAuth, device-flow and Copilot-token servers on 127.0.0.1 for the credential tests."""
