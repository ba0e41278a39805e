"""Reflex configuration of the control room web app (UI and API served on one port by `lakehouse run`)."""

import reflex as rx
from reflex.plugins.sitemap import SitemapPlugin

config = rx.Config(
    app_name="control_room",
    # No db_url: the control plane's schema is owned by supabase/migrations, never by Reflex/alembic.
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # Explicit, as Reflex 0.10 deprecates enabling Radix Themes implicitly.
    plugins=[rx.plugins.RadixThemesPlugin()],
    # An operator console has nothing to put in a sitemap; disabling it also silences its warning.
    disable_plugins=[SitemapPlugin],
)
