"""Check the rendered book in a real browser (headless Debian Chromium via Playwright): equations and widgets.

Every page is loaded from a local server, and every other request is aborted, so this also proves that neither the
equations nor the widgets need a CDN.

- Equations: on every page with math, MathJax (vendored in ``book/_vendor/mathjax``) must typeset every formula, and
  none may show a TeX error (an undefined macro, a missing brace).
- Widgets: for every page that holds a slider stack (``qpsnn_lite.widgets.slider_stack``), wait for the widget, then
  press Home and ArrowRight on the slider and check that exactly one image of the stack is visible and that it is the
  one the slider's position selects. Saves a screenshot per widget page to ``_build/screenshots/``.

Usage: python tools/browser_check.py [--chromium /usr/bin/chromium]   (after ``jupyter-book build .``)
Needs: ``pip install playwright`` (no browser download) and Debian's ``chromium``.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"


def serve() -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def visible_children(handle) -> list[str]:
    """Class names (qpsnn-stack-i) of the visible images of the stack that belongs to this slider handle."""
    return handle.evaluate(
        """(h) => {
            const box = h.closest('.widget-vbox');
            const imgs = Array.from(box.querySelectorAll('[class*="qpsnn-stack-"]'));
            return imgs.filter(c => c.offsetParent !== null && getComputedStyle(c).display !== 'none')
                .map(c => Array.from(c.classList).find(x => x.startsWith('qpsnn-stack-')));
        }"""
    )


def check_math(page, name: str) -> list[str]:
    """Wait for MathJax to typeset the page; return problems (formulas left untypeset, TeX errors)."""
    formulas = page.locator(".math").count()
    if formulas == 0:
        return []
    try:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
        page.evaluate("() => MathJax.startup.promise")
    except Exception:
        return [f"{name}: MathJax did not load ({formulas} formulas left as TeX)"]
    typeset = page.locator("mjx-container").count()
    errors = page.evaluate(
        "() => Array.from(document.querySelectorAll('mjx-merror')).map(e => e.getAttribute('data-mjx-error')"
        " || e.textContent).slice(0, 3)")
    problems = []
    if typeset < formulas:
        problems.append(f"{name}: {typeset} of {formulas} formulas typeset")
    if errors:
        problems.append(f"{name}: TeX errors {errors}")
    if not problems:
        print(f"browser_check: {name}: {typeset} formulas typeset, no TeX error")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    pages = sorted((HTML / "book").glob("*.html"))
    if not any("qpsnn-stack-" in p.read_text(errors="replace") for p in pages):
        print("browser_check: no page with a slider stack; build the book first")
        return 1
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    server, port = serve()
    problems = []
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--disable-sync", "--disable-quic"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=flags, headless=True)
        for html in pages:
            url = f"http://127.0.0.1:{port}/{html.relative_to(HTML).as_posix()}"
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
                f"http://127.0.0.1:{port}/") else route.abort())
            page.goto(url)
            problems += check_math(page, html.name)
            if "qpsnn-stack-" not in html.read_text(errors="replace"):
                page.close()
                continue
            try:
                page.wait_for_selector(".noUi-handle", timeout=20000)
            except Exception:
                problems.append(f"{html.name}: no slider rendered (widget manager did not load?)")
                page.screenshot(path=str(shots / (html.stem + ".png")), full_page=False)
                continue
            page.wait_for_timeout(500)
            # Only sliders of precomputed stacks work without a kernel; live sliders (interact) are skipped.
            stacked = page.locator(".widget-vbox:has([class*='qpsnn-stack-']) .noUi-handle:visible")
            n_sliders = stacked.count()
            for k in range(n_sliders):
                handle = stacked.nth(k)
                handle.scroll_into_view_if_needed()
                handle.focus()
                page.keyboard.press("Home")
                page.wait_for_timeout(200)
                first = visible_children(handle)
                page.keyboard.press("ArrowRight")
                page.wait_for_timeout(300)
                second = visible_children(handle)
                if first != ["qpsnn-stack-0"] or second != ["qpsnn-stack-1"]:
                    problems.append(f"{html.name} slider {k}: visible {first} at Home, {second} after ArrowRight")
                else:
                    print(f"browser_check: {html.name} slider {k}: Home -> {first}, ArrowRight -> {second}: ok")
                if k == 0:
                    page.screenshot(path=str(shots / (html.stem + ".png")), full_page=False)
            page.close()
        browser.close()
    server.shutdown()
    for p in problems:
        print("browser_check:", p)
    print(f"browser_check: {len(pages)} pages checked, {len(problems)} problems; screenshots in _build/screenshots/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
