"""Check the rendered book in a real browser (headless Debian Chromium via Playwright, a 1280-pixel window).

Every page is loaded from a local server, and every other request is aborted, so this also proves that neither the
equations nor the widgets need a CDN. For every page of the book:

- no console error and no uncaught script error;
- every image (figures, widget images) loaded;
- Solutions hidden: no exercise solution (a ``hide-cell`` cell's code and output, a "Solution" dropdown's text) is
  visible before a click, and each is visible after its toggle is clicked;
- no horizontal scroll bar: no code block, output or table is wider than the page's text column (checked with every
  solution opened);
- Equations: on every page with math, MathJax (vendored in ``book/_vendor/mathjax``) must typeset every formula, and
  none may show a TeX error (an undefined macro, a missing brace).
- Widgets: for every page that holds a slider stack (``qpsnn_lite.widgets.slider_stack``), wait for the widget, then
  press Home and ArrowRight on the slider and check that exactly one image of the stack is visible and that it is the
  one the slider's position selects.

Saves a full-page screenshot of every page to ``_build/screenshots/`` (a build artifact, never committed).

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


WIDE = """() => {
    const selectors = ['.bd-article pre', '.bd-article .cell_output', '.bd-article .output',
                       '.bd-article table', '.bd-article .highlight'];
    const wide = [];
    for (const el of document.querySelectorAll(selectors.join(','))) {
        if (el.offsetParent === null || el.clientWidth === 0) continue;
        if (el.scrollWidth > el.clientWidth + 2) {
            wide.push((el.innerText || '').trim().split('\\n')[0].slice(0, 60) +
                      ` (${el.scrollWidth} > ${el.clientWidth} px)`);
        }
    }
    return [...new Set(wide)];
}"""

SOLUTIONS = """() => Array.from(document.querySelectorAll(
    '.bd-article .tag_hide-cell > details, .bd-article details.sd-dropdown'))"""


def is_shown(handle) -> bool:
    """True if the content of a <details> (code, output or text below its summary) is visible on the page.

    Chromium keeps the layout boxes of a closed <details>'s content, so ``checkVisibility`` (which knows about
    closed <details> and content-visibility) decides, not the bounding box."""
    return handle.evaluate("""(d) => Array.from(d.querySelectorAll(':scope > :not(summary), .cell_output'))
        .some(c => c.checkVisibility({contentVisibilityAuto: true, visibilityProperty: true})
                   && c.getBoundingClientRect().height > 0)""")


def check_page(page, name: str) -> list[str]:
    """Images, hidden solutions and horizontal scroll of one loaded page."""
    problems = []
    broken = page.evaluate("() => Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0)"
                           ".map(i => (i.getAttribute('src') || '').slice(0, 60))")
    if broken:
        problems.append(f"{name}: {len(broken)} images did not load: {broken[:3]}")
    solutions = page.evaluate_handle(SOLUTIONS)
    count = solutions.evaluate("a => a.length")
    shown_before = opened = 0
    for i in range(count):
        details = solutions.evaluate_handle(f"a => a[{i}]").as_element()
        if is_shown(details):
            shown_before += 1
        details.evaluate("d => d.querySelector(':scope > summary').scrollIntoView()")
        details.evaluate("d => d.querySelector(':scope > summary').click()")
        page.wait_for_timeout(50)
        if is_shown(details):
            opened += 1
    if shown_before:
        problems.append(f"{name}: {shown_before} of {count} solutions visible before a click")
    if opened < count:
        problems.append(f"{name}: {count - opened} of {count} solutions still hidden after their toggle was clicked")
    wide = page.evaluate(WIDE)
    if wide:
        problems.append(f"{name}: {len(wide)} blocks scroll sideways at 1280 px, e.g. {wide[:3]}")
    if not problems:
        print(f"browser_check: {name}: images ok, {count} solutions hidden until clicked, no sideways scroll")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    pages = sorted((HTML / "book").glob("*.html"))
    if not pages:
        print("browser_check: no pages in _build/html/book; build the book first (jupyter-book build .)")
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
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m, e=errors: e.append(m.text[:120]) if m.type == "error"
                    and "favicon.ico" not in (m.location or {}).get("url", "")  # the browser's own request
                    and "invalid theme mode" not in m.text else None)  # pydata theme, first visit: no stored mode
            page.on("pageerror", lambda exc, e=errors: e.append(str(exc)[:120]))
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
                f"http://127.0.0.1:{port}/") else route.abort())
            page.goto(url)
            page.wait_for_load_state("load")
            problems += check_math(page, html.name)
            if "qpsnn-stack-" in html.read_text(errors="replace"):
                problems += check_widgets(page, html.name)
            problems += check_page(page, html.name)
            if errors:
                problems.append(f"{html.name}: {len(errors)} console errors, e.g. {errors[:2]}")
            page.screenshot(path=str(shots / (html.stem + ".png")), full_page=True)
            page.close()
        browser.close()
    server.shutdown()
    for p in problems:
        print("browser_check:", p)
    print(f"browser_check: {len(pages)} pages checked, {len(problems)} problems; screenshots in _build/screenshots/")
    return 1 if problems else 0


def check_widgets(page, name: str) -> list[str]:
    """Every precomputed slider stack shows exactly the image its slider selects, at Home and after ArrowRight."""
    try:
        page.wait_for_selector(".noUi-handle", timeout=20000)
    except Exception:
        return [f"{name}: no slider rendered (widget manager did not load?)"]
    page.wait_for_timeout(500)
    problems = []
    # Only sliders of precomputed stacks work without a kernel; live sliders (interact) are skipped.
    stacked = page.locator(".widget-vbox:has([class*='qpsnn-stack-']) .noUi-handle:visible")
    for k in range(stacked.count()):
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
            problems.append(f"{name} slider {k}: visible {first} at Home, {second} after ArrowRight")
        else:
            print(f"browser_check: {name} slider {k}: Home -> {first}, ArrowRight -> {second}: ok")
    return problems

if __name__ == "__main__":
    sys.exit(main())
