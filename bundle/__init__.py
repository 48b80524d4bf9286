"""Bundles: everything the online server needs, built offline into one versioned directory
(builder.py), verified and loaded by the server (loader.py)."""
