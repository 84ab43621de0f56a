"""`nmt serve`: an HTTP API over a Translator and the page that uses it.

`app` is the Starlette application (routes, errors, the run loop); `requests` what a request
may ask for and the JSON of an answer; `batcher` decodes the sentences
of concurrent requests together; `guards` keeps other sites, slow clients and hostile bodies
from driving or starving the server; `static/` holds the page and the OpenAPI document.

May import the package root and every wing but the CLI.
"""
