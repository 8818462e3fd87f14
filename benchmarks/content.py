"""What the origin serves in the benchmarks: a ~30 KB page, a 200 KB asset, a 100 MiB file."""

from __future__ import annotations

import os
from pathlib import Path

PAGE = "page.html"
ASSET = "asset.bin"
BIG = "big.bin"


def page_html(target_bytes: int = 30_000) -> bytes:
    """A product-listing page of about `target_bytes`, with a <head> to inject into."""
    head = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Bench shop - all products</title>\n"
        '<link rel="stylesheet" href="/site.css">\n</head>\n<body>\n'
        '<header><nav><a href="/">Home</a> <a href="/signup">Sign up</a></nav></header>\n'
        '<main><h1>All products</h1>\n<ul class="products">\n'
    )
    items = []
    n = 0
    size = len(head)
    while size < target_bytes - 200:
        item = (
            f'<li class="product" id="p{n}"><a href="/products/{n}">'
            f'<img src="/img/{n}.jpg" alt="Product {n}" width="160" height="160">'
            f"<h2>Product number {n}</h2></a><p>A sturdy, well made thing that does what "
            f'you need, in three colours.</p><span class="price">{10 + n % 90}.99 EUR</span>'
            f'<button type="button" data-id="{n}">Add to cart</button></li>\n'
        )
        items.append(item)
        size += len(item)
        n += 1
    tail = "</ul></main>\n<footer>Bench shop</footer>\n</body>\n</html>\n"
    return (head + "".join(items) + tail).encode()


def write_content(directory: Path, big_bytes: int) -> dict[str, int]:
    """Write the files (the big one only when missing or of another size); name -> size."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PAGE).write_bytes(page_html())
    # Incompressible, like images and video: gzip must not make it look small.
    (directory / ASSET).write_bytes(os.urandom(200 * 1024))
    big = directory / BIG
    if not big.is_file() or big.stat().st_size != big_bytes:
        block = os.urandom(1 << 20)
        with big.open("wb") as f:
            for _ in range(big_bytes >> 20):
                f.write(block)
            f.write(block[: big_bytes & ((1 << 20) - 1)])
    return {p.name: p.stat().st_size for p in directory.iterdir() if p.is_file()}
