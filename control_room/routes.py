"""Route constants of the web app, in one place so pages and links agree."""

HOME = "/"
