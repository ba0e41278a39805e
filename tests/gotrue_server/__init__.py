"""A protocol-faithful test server of the Supabase Auth (GoTrue) endpoints the control room uses."""

from tests.gotrue_server.server import GoTrueServer, GoTrueUser, gotrue_server

__all__ = ["GoTrueServer", "GoTrueUser", "gotrue_server"]
