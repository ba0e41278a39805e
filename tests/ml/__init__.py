"""Tests of MLflow in the control room (issue 23), against a real tracking server."""
