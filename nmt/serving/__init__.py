"""`nmt serve`: an HTTP API over a Translator and the page that uses it.

`app` is the Starlette application (routes, limits, errors); `batcher` decodes the sentences
of concurrent requests together; `static/` holds the page and the OpenAPI document.

May import the package root and every wing but the CLI.
"""
