"""A protocol-faithful OpenMetadata test server (the endpoints the catalog sync uses); see server.py."""
