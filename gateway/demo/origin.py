"""Demo origin: a small static shop ("Demo Shop") to put behind the gateway."""

from importlib import resources
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

_HTML: Final = "text/html"
_JS: Final = "text/javascript"

# (path, title, file) of the pages a person should open, in nav order.
_PAGES: Final = (
    ("/", "Shop home with product cards", "index.html"),
    ("/signup", "Sign-up form (email, phone, password)", "signup.html"),
    ("/checkout", "Checkout form (card fields)", "checkout.html"),
    ("/app/", "Single-page app (history.pushState views)", "app.html"),
    ("/admin/", "Admin area (excluded from recording)", "admin.html"),
    ("/partner", "Page with another vendor's recorder (not injected)", "partner.html"),
)

# (path, file, content type) of everything else the pages use.
_FILES: Final = (
    ("/signup/thanks", "signup-thanks.html", _HTML),
    ("/checkout/done", "checkout-done.html", _HTML),
    ("/static/site.css", "site.css", "text/css"),
    ("/static/app.js", "app.js", _JS),
    ("/vendor/smartlook-recorder.js", "smartlook-recorder.js", _JS),
    ("/api/products", "products.json", "application/json"),
)


def demo_pages() -> list[tuple[str, str]]:
    """(path, title) of the pages worth opening, for the CLI to print as URLs."""
    return [(path, title) for path, title, _ in _PAGES]


def build_demo_origin() -> web.Application:
    """The shop app; every file is read once here and served from memory."""
    folder = resources.files(__package__) / "pages"
    bodies = {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}

    def serve(name: str, content_type: str) -> Handler:
        body = bodies[name]  # a missing file fails at start-up, not on first request

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, content_type=content_type, charset="utf-8")

        return handler

    def see_other(location: str) -> Handler:
        # Form posts redirect to a fixed page, so nothing typed is ever echoed back.
        async def handler(request: web.Request) -> web.StreamResponse:
            raise web.HTTPSeeOther(location)

        return handler

    not_found_body = bodies["not-found.html"]

    @web.middleware
    async def not_found_page(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.Response(
                status=404, body=not_found_body, content_type=_HTML, charset="utf-8"
            )

    # Outermost first: a path still unknown after slash normalising gets the 404 page.
    middlewares: list[Middleware] = [not_found_page, web.normalize_path_middleware()]
    app = web.Application(middlewares=middlewares)
    app.add_routes(web.get(path, serve(name, _HTML)) for path, _, name in _PAGES)
    app.add_routes(web.get(path, serve(name, ctype)) for path, name, ctype in _FILES)
    app.add_routes(
        [
            # Client-side routes: every /app/... URL loads the same shell.
            web.get("/app/{view:.+}", serve("app.html", _HTML)),
            web.post("/signup", see_other("/signup/thanks")),
            web.post("/checkout", see_other("/checkout/done")),
        ]
    )
    return app
