"""Example task code run by the demo pipeline (``lakehouse run`` submits it with the demo data)."""
