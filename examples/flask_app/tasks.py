"""The jobs of the Flask example: `greet` runs on the worker inside an app context."""

from ext import cq
from flask import current_app


@cq.job("mail")
def greet(name: str) -> str:
    return f"{current_app.config['GREETING']}, {name}"
