"""A Superset dashboard embedded with Superset's own embedded SDK (``@superset-ui/embedded-sdk`` from npm), wrapped
as a Reflex component. The SDK makes the iframe and hands it the guest token over a MessageChannel; the token comes
from the page's state (minted on the server for the signed-in user, refreshed before it expires), never from a
secret in the browser."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.utils.imports import ImportVar

EMBEDDED_SDK = "@superset-ui/embedded-sdk@0.4.0"

# The SDK asks for a token when it mounts and again before the token expires: it reads the newest one the state holds.
EMBED_JS = """
function SupersetEmbed({dashboardId, supersetDomain, guestToken, height, id}) {
  const mount = useRef(null);
  const token = useRef(guestToken);
  token.current = guestToken;
  const ready = Boolean(guestToken);
  useEffect(() => {
    if (!mount.current || !dashboardId || !supersetDomain || !ready) return;
    let embedded = null;
    let gone = false;
    embedDashboard({
      id: dashboardId, supersetDomain, mountPoint: mount.current,
      fetchGuestToken: async () => token.current,
      dashboardUiConfig: {hideTitle: false, filters: {expanded: false}},
    }).then((dashboard) => {
      if (gone) { dashboard.unmount(); return; }
      embedded = dashboard;
      const frame = mount.current && mount.current.querySelector("iframe");
      if (frame) { frame.style.width = "100%"; frame.style.height = height || "1100px"; frame.style.border = "0"; }
    });
    return () => { gone = true; if (embedded) embedded.unmount(); };
  }, [dashboardId, supersetDomain, ready]);
  return createElement("div", {ref: mount, id, style: {width: "100%"}});
}
"""


class SupersetEmbed(rx.Component):
    """Superset's embedded dashboard (``embedDashboard`` of the SDK) in a div."""

    tag = "SupersetEmbed"
    dashboard_id: rx.Var[str]
    superset_domain: rx.Var[str]
    guest_token: rx.Var[str]
    height: rx.Var[str]

    def add_imports(self) -> dict[str, Any]:
        """The SDK and the React hooks the wrapper uses."""
        return {
            EMBEDDED_SDK: [ImportVar(tag="embedDashboard")],
            "react": [ImportVar(tag="useEffect"), ImportVar(tag="useRef"), ImportVar(tag="createElement")],
        }

    def add_custom_code(self) -> list[str]:
        """The wrapper component, at module level."""
        return [EMBED_JS]


def superset_embed(*, dashboard_id: Any, superset_domain: Any, guest_token: Any, **props: Any) -> rx.Component:
    """An embedded Superset dashboard, shown once a guest token is there."""
    component: rx.Component = SupersetEmbed.create(
        dashboard_id=dashboard_id, superset_domain=superset_domain, guest_token=guest_token, **props
    )
    return component
