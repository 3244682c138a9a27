"""Headless core: numpy + torch only (no napari, no Qt)."""
