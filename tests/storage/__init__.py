"""Tests of the artifact stores (local folder and S3 on a real SeaweedFS)."""
