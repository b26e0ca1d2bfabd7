"""One module per ``sarco`` sub-command; each exposes ``register(app)``."""
