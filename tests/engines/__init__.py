"""Engine tests (real engines, shared per test session where they are heavy)."""
