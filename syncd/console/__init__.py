"""The hub's web console (`syncd console`): FastAPI routes, Jinja2 templates, vendored JS."""
