"""The WSGI entry point for gunicorn: ``gunicorn server.wsgi:app``."""
from server import create_app

app = create_app()
